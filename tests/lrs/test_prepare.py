"""`mome prepare-lrs` on a tiny LRS3-like tree whose videos move and scale a real photograph of a face
(scikit-image's astronaut), with an AAC audio track and LRS3 transcripts with word timings."""

import json

import av
import numpy as np
import pytest

from faces import astronaut_frames, faceless_frames, frame_transform, tone, write_av
from mome.cli import main
from mome.data.labels import read_labels
from mome.data.media import read_audio, read_media, read_video
from mome.lrs.face import FaceLandmarker
from mome.lrs.mouth_crop import apply_transform, crop_mouths
from mome.lrs.prepare import Word, scan_release, segment_words, shard

skimage_data = pytest.importorskip("skimage.data")


def write_txt(path, words):
    """LRS3 transcript: Text/Conf header, then the word table."""
    lines = [f"Text:  {' '.join(w for w, _, _ in words).upper()}", "Conf:  3", "", "WORD START END ASDSCORE"]
    lines += [f"{w.upper()} {s:.2f} {e:.2f} 5.1" for w, s, e in words]
    path.write_text("\n".join(lines) + "\n")


WORDS = [
    ("hello", 0.10, 0.40),
    ("there", 0.50, 0.90),
    ("{LG}", 0.95, 1.00),
    ("space", 1.30, 1.80),
    ("walk", 2.00, 2.40),
    ("today", 2.45, 2.90),
]
CLIPS = {  # rel stem: (seconds, fps, kind)
    "trainval/spk_a/00001": (2.0, 25, "face"),
    "trainval/spk_b/00002": (1.5, 30, "face"),  # 30 fps source: resampled to 25 by timestamp
    "test/spk_c/00003": (1.0, 25, "face"),
    "pretrain/spk_a/00004": (3.0, 25, "face"),  # cut into <= 1.2 s segments in the test
    "trainval/spk_b/00005": (1.0, 25, "noface"),
    "test/spk_c/00006": (1.0, 25, "garbage"),
    "trainval/spk_a/00007": (0.32, 25, "face"),  # 8 frames: too few
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs3")
    for rel, (seconds, fps, kind) in CLIPS.items():
        mp4 = root / f"{rel}.mp4"
        n = round(seconds * fps)
        words = [w for w in WORDS if w[2] <= seconds] or WORDS[:1]
        mp4.parent.mkdir(parents=True, exist_ok=True)
        write_txt(mp4.with_suffix(".txt"), words)
        if kind == "garbage":
            mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
            continue
        frames = astronaut_frames(n) if kind == "face" else faceless_frames(n)
        write_av(mp4, frames, tone(seconds), fps)
    return root


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    args = [
        "prepare-lrs",
        str(release),
        str(out),
        "--dataset",
        "lrs3",
        "--max-seconds",
        "1.2",
        "--workers",
        "2",
        "--quiet",
        "--val-fraction",
        "0",
    ]
    assert main(args) == 0
    return out, args


def test_outputs_sizes_rates_lengths_and_labels(release, prepared):
    out, _ = prepared
    report = json.loads((out / "meta" / "report.json").read_text())
    rows = {
        r.rel_path: r for split in ("train", "val", "test") for r in read_labels(out / "labels" / f"{split}.csv")[0]
    }
    train = {r.rel_path for r in read_labels(out / "labels" / "train.csv")[0]}
    test = {r.rel_path for r in read_labels(out / "labels" / "test.csv")[0]}
    assert {"lrs3/trainval/spk_a/00001", "lrs3/trainval/spk_b/00002"} <= train
    assert test == {"lrs3/test/spk_c/00003"}
    segments = sorted(r for r in rows if r.startswith("lrs3/pretrain/spk_a/00004_"))
    assert len(segments) >= 3 and segments[0].endswith("_00") and all(r in train for r in segments)
    assert rows["lrs3/trainval/spk_a/00001"].transcript == "hello there space"  # {LG} dropped, lower case
    # The segments hold the clip's words in order, each once.
    assert " ".join(rows[s].transcript for s in segments) == "hello there space walk today"
    for rel, row in rows.items():
        video, audio = read_video(out / f"{rel}.mp4"), read_audio(out / f"{rel}.wav")  # read_audio checks 16 kHz
        assert video.shape[1:] == (96, 96, 3) and len(video) == row.input_length
        assert len(audio) == 640 * row.input_length
        with av.open(str(out / f"{rel}.mp4")) as c:
            assert c.streams.video[0].average_rate == 25
        if rel.startswith("lrs3/pretrain"):
            assert row.input_length <= 1.2 * 25
    assert rows["lrs3/trainval/spk_a/00001"].input_length == 50
    assert abs(rows["lrs3/trainval/spk_b/00002"].input_length - 37.5) <= 1  # 1.5 s at 30 fps -> 25 fps
    assert rows["lrs3/test/spk_c/00003"].input_length == 25
    # Every skip is reported with its reason.
    reasons = {s["rel_path"]: s["reason"] for s in report["skipped"]}
    assert reasons == {
        "lrs3/trainval/spk_b/00005": "no face",
        "lrs3/test/spk_c/00006": "unreadable file",
        "lrs3/trainval/spk_a/00007": "too few frames",
    }
    assert report["done"] == report["clips"] == len(CLIPS) and report["pending"] == 0
    assert report["written"] == len(rows) and report["this_run"]["processed"] == len(CLIPS)
    subset_rows = read_labels(out / "labels" / "lrs3_trainval.csv")[0]
    assert {r.rel_path for r in subset_rows} == {"lrs3/trainval/spk_a/00001", "lrs3/trainval/spk_b/00002"}


def test_crop_follows_the_mouth(release, prepared):
    """Landmarks of the photograph, moved with each frame, land at the crop's centre; the written crops
    look like the still photograph's own mouth crop."""
    out, _ = prepared
    n = 50
    frames = read_media(release / "trainval/spk_a/00001.mp4")[0]
    landmarker = FaceLandmarker()
    lm = [landmarker(f) for f in frames]
    result = crop_mouths(frames, lm)
    still = landmarker(skimage_data.astronaut())
    for t in range(n):
        true_mouth = apply_transform(frame_transform(t, n), still[48:68].mean(axis=0)[None])
        centre = apply_transform(result.transforms[t], true_mouth)[0]
        assert np.all(np.abs(centre - 48) < 3), (t, centre)
    # The still photograph's crop (12 identical frames) against every written crop.
    reference = crop_mouths(np.stack([skimage_data.astronaut()] * 12), [still] * 12).crops[0].astype(float)
    written = read_video(out / "lrs3/trainval/spk_a/00001.mp4").astype(float)
    errors = np.abs(written - reference).mean(axis=(1, 2, 3))
    shifted = np.abs(np.roll(reference, 12, axis=0) - reference).mean()  # a 12 px vertical miss, for scale
    assert errors.max() < shifted / 2, (errors.max(), shifted)


def test_second_run_does_no_work(prepared):
    out, args = prepared
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    labels = (out / "labels" / "train.csv").read_bytes()
    assert main(args) == 0
    report = json.loads((out / "meta" / "report.json").read_text())
    assert report["this_run"]["processed"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes
    assert (out / "labels" / "train.csv").read_bytes() == labels


def test_shards_are_disjoint_and_complete(release, tmp_path):
    clips = scan_release(release, "lrs3", val_fraction=0)
    parts = [shard(clips, i, 3) for i in range(3)]
    keys = [c.key for p in parts for c in p]
    assert len(keys) == len(set(keys)) == len(clips)
    # Through the command: shard 0/2, then 1/2, then the labels equal a single run's.
    out = tmp_path / "sharded"
    base = [
        "prepare-lrs",
        str(release),
        str(out),
        "--dataset",
        "lrs3",
        "--max-seconds",
        "1.2",
        "--workers",
        "1",
        "--quiet",
        "--val-fraction",
        "0",
    ]
    assert main([*base, "--shard", "0/2"]) == 0
    first = json.loads((out / "meta" / "report.json").read_text())
    assert first["pending"] == len(shard(clips, 1, 2)) and first["this_run"]["processed"] == len(shard(clips, 0, 2))
    assert main([*base, "--shard", "1/2"]) == 0
    second = json.loads((out / "meta" / "report.json").read_text())
    assert second["pending"] == 0 and second["done"] == len(clips)
    assert main([*base, "--shard", "2/2"]) == 2


def test_segmentation_at_word_boundaries():
    words = [Word(f"w{i}", 1.0 * i + 0.2, 1.0 * i + 0.8) for i in range(40)]  # 40 s of one word per second
    segments = segment_words(words, 40.5, max_seconds=16.0, pad=0.2)
    assert all(s.end - s.start <= 16.0 + 1e-9 for s in segments)
    assert " ".join(s.text for s in segments) == " ".join(w.text for w in words)
    # Cuts fall in the silence between words (never inside a word), with context around the words.
    for seg in segments:
        first, last = seg.text.split()[0], seg.text.split()[-1]
        w0, w1 = words[int(first[1:])], words[int(last[1:])]
        assert w0.start - 0.2 - 1e-9 <= seg.start <= w0.start and w1.end <= seg.end <= w1.end + 0.2 + 1e-9
    # auto_avsr crashes when the first word ends after the limit (5.2.6); a lone long word is cut instead.
    long = segment_words([Word("a", 0.5, 17.5), Word("b", 18.0, 18.5)], 19.0, max_seconds=16.0)
    assert [s.text for s in long] == ["a", "b"] and long[0].end - long[0].start <= 16.0
    assert segment_words(words[:3], 3.0) == [type(segments[0])(0.0, 3.0, "w0 w1 w2")]  # short clip: whole
