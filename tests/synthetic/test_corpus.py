import json
import zlib

import numpy as np
import pytest
import soundfile as sf

from mome.data.labels import read_labels, read_metadata
from mome.data.media import read_video
from mome.synthetic import corpus as synthetic
from mome.synthetic import grammar
from mome.synthetic.corpus import synthesize_corpus
from mome.synthetic.speakers import make_speakers
from mome.synthetic.tts import Voice, synthesize
from tiny import TINY_CORPUS as TINY


def _digest(path):
    return zlib.crc32(path.read_bytes())


def test_same_seed_gives_identical_labels_audio_and_video(corpus, tmp_path):
    synthesize_corpus(tmp_path, 8, seed=5, **TINY)
    for split in ("train", "val", "test"):
        assert (corpus / "labels" / f"{split}.csv").read_bytes() == (tmp_path / "labels" / f"{split}.csv").read_bytes()
        assert (corpus / "meta" / f"{split}.jsonl").read_bytes() == (tmp_path / "meta" / f"{split}.jsonl").read_bytes()
    for wav in sorted(corpus.glob("synth/**/*.wav")):
        assert _digest(wav) == _digest(tmp_path / wav.relative_to(corpus)), wav
    # The rendered frames are deterministic, but libx264 through PyAV is not byte-deterministic from one
    # file to the next within a process, so the mp4 are compared by frame count only.
    for mp4 in sorted(corpus.glob("synth/**/*.mp4")):
        assert len(read_video(mp4)) == len(read_video(tmp_path / mp4.relative_to(corpus)))
    assert _digest(corpus / "noise" / "babble.wav") == _digest(tmp_path / "noise" / "babble.wav")


def test_other_seed_differs(corpus, tmp_path):
    synthesize_corpus(tmp_path, 8, seed=6, **TINY)
    assert (corpus / "labels" / "train.csv").read_bytes() != (tmp_path / "labels" / "train.csv").read_bytes()


def test_audio_and_video_in_sync(corpus):
    meta = read_metadata(corpus)
    for split in ("train", "val", "test"):
        rows, problems = read_labels(corpus / "labels" / f"{split}.csv")
        assert rows and not problems
        for row in rows:
            audio, sr = sf.read(corpus / f"{row.rel_path}.wav")
            frames = read_video(corpus / f"{row.rel_path}.mp4")
            assert sr == 16000 and frames.shape[1:] == (96, 96, 3)
            assert len(frames) == row.input_length and len(audio) == 640 * len(frames)
            rec = meta[row.rel_path]
            assert len(rec["frame_visemes"]) == len(frames)
            assert rec["phonemes"][-1][2] <= len(frames) / 25 + 0.1  # timings end with the audio
            assert rec["text"] == row.transcript and rec["grammar"] in ("grid", "open")
            assert rec["engine"] in ("flite", "espeak")


def test_speakers_disjoint_between_splits(corpus):
    speakers = {}
    for split in ("train", "val", "test"):
        rows, _ = read_labels(corpus / "labels" / f"{split}.csv")
        speakers[split] = {r.rel_path.split("/")[2] for r in rows}
    assert not (speakers["train"] & speakers["val"]) and not (speakers["train"] & speakers["test"])
    assert not (speakers["val"] & speakers["test"])
    all_speakers = make_speakers(0)
    ids = [s.id for s in all_speakers]
    assert len(ids) == len(set(ids))
    espeak = [(s.split, s.voice.name) for s in all_speakers if s.voice.engine == "espeak"]
    assert len({v for _, v in espeak}) == len(espeak)  # no espeak voice in two splits (or twice)
    for split in ("train", "val", "test"):
        assert {s.voice.engine for s in all_speakers if s.split == split} == {"flite", "espeak"}
    babble = json.loads((corpus / "meta" / "speakers.json").read_text())
    assert {s["split"] for s in babble} == {"train", "val", "test", "noise"}


def test_more_training_speakers_leave_the_held_out_speakers_as_they_were():
    """A corpus with more training voices is compared on the same validation and test speakers."""
    default = [s.to_dict() for s in make_speakers(0)]
    more = [s.to_dict() for s in make_speakers(0, {"train": 100, "val": 6, "test": 8, "noise": 8})]
    assert [s for s in more if s["split"] != "train"] == [s for s in default if s["split"] != "train"]
    train = [s for s in more if s["split"] == "train"]
    assert train[:32] == [s for s in default if s["split"] == "train"]  # the extra ones are added after
    assert len(train) == len({s["id"] for s in train}) == 100
    espeak = [s["voice"] for s in more if s["engine"] == "espeak"]
    assert len(espeak) == len(set(espeak)) and 45 <= sum(s["engine"] == "flite" for s in train) <= 55
    with pytest.raises(ValueError, match="more espeak speakers than"):
        make_speakers(0, {"train": 400})


def test_fixed_voices_change_only_rate_and_pitch():
    varied, fixed = make_speakers(0), make_speakers(0, fixed_voices=True)
    assert len({(s.voice.rate, s.voice.pitch) for s in varied}) > 10  # default: every speaker its own
    assert {(s.voice.rate, s.voice.pitch) for s in fixed} == {(1.0, 1.0)}
    assert [(s.id, s.split, s.voice.engine, s.voice.name, s.appearance) for s in fixed] == [
        (s.id, s.split, s.voice.engine, s.voice.name, s.appearance) for s in varied
    ]


def test_synth_fixed_voices_flag(tmp_path):
    from mome.cli import main

    out = tmp_path / "corpus"
    assert (
        main(
            [
                "synth",
                str(out),
                "--utterances",
                "10",
                "--engines",
                "flite",
                "--grid-fraction",
                "1",
                "--fixed-voices",
                "--babble-seconds",
                "0",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    speakers = json.loads((out / "meta" / "speakers.json").read_text())
    assert {(s["engine"], s["rate"], s["pitch"]) for s in speakers} == {("flite", 1.0, 1.0)}


def test_synth_train_speakers_flag(tmp_path, capsys):
    from mome.cli import main

    out = tmp_path / "corpus"
    assert (
        main(
            [
                "synth",
                str(out),
                "--utterances",
                "12",
                "--engines",
                "flite",
                "--grid-fraction",
                "1",
                "--train-speakers",
                "5",
                "--babble-seconds",
                "0",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    speakers = json.loads((out / "meta" / "speakers.json").read_text())
    assert sum(s["split"] == "train" for s in speakers) == 5
    assert main(["synth", str(tmp_path / "other"), "--train-speakers", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--train-speakers must be at least 1")


def test_test_sentences_never_in_training():
    import random

    train = {s.text for s in grammar.sample_sentences(random.Random(0), 3000, "train", 0.5)}
    test = {s.text for s in grammar.sample_sentences(random.Random(1), 300, "test", 0.5)}
    val = {s.text for s in grammar.sample_sentences(random.Random(2), 300, "val", 0.5)}
    assert not (train & test) and not (train & val) and not (val & test)
    assert all(grammar.sentence_partition(t) == "test" for t in test)


def test_open_vocabulary_is_large_and_letter_a_is_spoken_as_its_name():
    assert len(grammar.vocabulary("open")) >= 1000
    assert len(grammar.vocabulary("grid")) == 51
    s = grammar.Sentence("place red at a three soon", "grid")
    assert s.spoken() == "place red at eigh three soon" and s.text.split()[3] == "a"
    assert grammar.Sentence("place a red box", "open").spoken() == "place a red box"  # the article stays


@pytest.mark.parametrize("voice", [Voice("espeak", "en-us"), Voice("espeak", "en-gb-x-rp"), Voice("flite", "slt")])
def test_every_grid_letter_sounds_different(voice):
    """Each engine says the 25 letters with 25 different phoneme strings: a letter spoken like another (espeak-ng
    read the former spelling "ay" as the letter i) is a label no model can learn."""
    sounds = {}
    for letter in grammar.GRID_WORDS["letter"]:
        speech = synthesize(grammar.Sentence(f"place red at {letter} three soon", "grid").spoken(), voice)
        sounds.setdefault(" ".join(p for p, _, _ in speech.phonemes), []).append(letter)
    assert not [letters for letters in sounds.values() if len(letters) > 1]


def test_failed_items_are_skipped_and_reported(tmp_path, monkeypatch):
    real = synthetic.synthesize

    def flaky(text, voice):
        if voice.engine == "espeak":
            raise synthetic.TTSError("simulated engine failure")
        return real(text, voice)

    monkeypatch.setattr(synthetic, "synthesize", flaky)
    report = synthesize_corpus(tmp_path, 8, seed=5, **{**TINY, "babble_seconds": 0})
    assert report["skipped"] and report["written"] + len(report["skipped"]) == 8
    assert all("simulated engine failure" in item["reason"] for item in report["skipped"])
    on_disk = json.loads((tmp_path / "meta" / "report.json").read_text())
    assert on_disk["skipped"] == report["skipped"]
    written = sum(len(read_labels(tmp_path / "labels" / f"{s}.csv")[0]) for s in ("train", "val", "test"))
    assert written == report["written"]


def test_video_carries_the_visemes(corpus):
    """Mouth opening (dark cavity pixels) is larger on open vowels than on p/b/m closures."""
    meta = read_metadata(corpus)
    open_px, closed_px = [], []
    for rel, rec in meta.items():
        gray = read_video(corpus / f"{rel}.mp4").mean(-1)
        dark = (gray < 60).sum((1, 2))
        labels = np.array(rec["frame_visemes"])
        open_px += dark[labels == 9].tolist()
        closed_px += dark[labels == 1].tolist()
    assert open_px and closed_px and np.mean(open_px) > 2 * np.mean(closed_px) + 5


def test_synth_refuses_a_non_empty_out_unless_overwrite(tmp_path, capsys):
    from mome.cli import main

    out = tmp_path / "corpus"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "train.csv").write_text("synth,synth/train/old/00000,10,an older corpus\n")
    tiny = ["--utterances", "2", "--engines", "flite", "--babble-seconds", "0", "--workers", "1"]
    assert main(["synth", str(out), *tiny]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "labels" / "train.csv").read_text().startswith("synth,synth/train/old")  # untouched
    assert main(["synth", str(out), *tiny, "--overwrite"]) == 0
    assert len(read_labels(out / "labels" / "train.csv")[0]) == 2
