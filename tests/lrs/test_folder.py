"""`mome prepare SRC OUT` on a folder of one's own videos: synthetic talking faces (`faces`) in a speaker folder
each, with odd names, a clip without a transcript, one without audio, one without a face and one too long,
run from a temporary working directory with relative paths only."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from faces import astronaut_frames, faceless_frames, tone, write_av
from mome.cli import main
from mome.constants import MAX_CLIP_SECONDS
from mome.data.labels import read_labels
from mome.data.media import read_audio, read_video
from mome.lrs.folder import assign_splits, scan_folder

pytest.importorskip("skimage.data")

SRC = "my videos"  # a space in the folder's own name too
CLIPS = {  # path under SRC: (seconds, kind, transcript or None)
    "anna/clip 1.mp4": (0.8, "face", "Hello there, Anna"),
    "anna/Zoë interview v1.2.mp4": (0.8, "face", "Bonjour Zoë"),  # unicode, spaces, a dot in the stem
    "anna/no transcript.mp4": (0.8, "face", None),
    "bob/b1.mkv": (0.8, "face", "Text:  PLACE BLUE AT SIX {LG}\nConf:  3\n"),  # an LRS transcript, in a .mkv name
    "bob/silent.mp4": (0.8, "silent", "no sound here"),
    "carol/c1.mov": (0.8, "face", "carol speaks"),
    "carol/no face.mp4": (0.6, "noface", "nobody here"),
    "dave/d1.webm": (0.8, "face", "dave speaks\nover two lines"),
    "dave/long.mp4": (MAX_CLIP_SECONDS + 1, "long", "a very long talk"),
}
EXPECTED_SKIPS = {
    "own/anna/no transcript": "no transcript",
    "own/bob/silent": "no audio",
    "own/carol/no face": "no face",
    "own/dave/long": "too long",
}
WRITTEN = {
    "own/anna/clip 1": "hello there, anna",
    "own/anna/Zoë interview v1.2": "bonjour zoë",
    "own/bob/b1": "place blue at six",
    "own/carol/c1": "carol speaks",
    "own/dave/d1": "dave speaks over two lines",
}
ARGS = ["--speaker-from", "folder", "--splits", "train=0.5,val=0.25,test=0.25", "--seed", "1", "--quiet"]


def make_folder(root: Path) -> Path:
    src = root / SRC
    for rel, (seconds, kind, text) in CLIPS.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        n = round(seconds * 25)
        frames = {"face": astronaut_frames, "silent": astronaut_frames, "noface": faceless_frames}.get(kind)
        frames = frames(n) if frames else faceless_frames(n, size=32)
        write_av(path, frames, None if kind == "silent" else tone(seconds))
        if text is not None:
            path.with_suffix(".txt").write_text(text, encoding="utf-8")
    shutil.copy(src / "anna/clip 1.mp4", src / "anna/.hidden.mp4")  # hidden files are not videos of the corpus
    shutil.copy(src / "anna/clip 1.mp4", src / "._clip 1.mp4")  # (macOS's AppleDouble files start with "._")
    (src / "notes.md").write_text("not a video")
    return src


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working directory with the folder `my videos/` and `out/` prepared from it with relative paths."""
    cwd = tmp_path_factory.mktemp("cwd")
    make_folder(cwd)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        assert main(["prepare", SRC, "out", "--workers", "2", *ARGS]) == 0
    return cwd


def _labels(out: Path) -> dict[str, dict]:
    """rel_path -> {split, transcript, frames} over the three label files, read strictly under the root."""
    rows = {}
    for split in ("train", "val", "test"):
        for row in read_labels(out / "labels" / f"{split}.csv", strict=True, root=out)[0]:
            assert row.rel_path not in rows, row.rel_path
            rows[row.rel_path] = {"split": split, "text": row.transcript, "frames": row.input_length}
    return rows


def test_report_names_every_skip_and_its_reason(workdir):
    out = workdir / "out"
    report = json.loads((out / "meta" / "report.json").read_text())
    assert {s["rel_path"]: s["reason"] for s in report["skipped"]} == EXPECTED_SKIPS
    details = {s["rel_path"]: s["detail"] for s in report["skipped"]}
    assert "no transcript.txt" in details["own/anna/no transcript"]
    assert f"longer than the {MAX_CLIP_SECONDS} s" in details["own/dave/long"]
    assert report["skipped_reasons"] == {"no transcript": 1, "no audio": 1, "no face": 1, "too long": 1}
    assert report["clips"] == report["done"] == len(CLIPS) and report["pending"] == 0  # hidden files not counted
    assert report["written"] == len(WRITTEN) and report["this_run"]["processed"] == len(CLIPS)
    assert report["source"] == "folder" and report["speaker_from"] == "folder"


def test_outputs_have_the_corpus_layout_and_odd_names_survive(workdir):
    out = workdir / "out"
    rows = _labels(out)
    assert {r: v["text"] for r, v in rows.items()} == WRITTEN
    for rel, row in rows.items():
        video, audio = read_video(out / f"{rel}.mp4"), read_audio(out / f"{rel}.wav")
        assert video.shape == (row["frames"], 96, 96, 3) and len(audio) == 640 * row["frames"]
        assert row["frames"] == 20  # 0.8 s at 25 fps, whole: no clip is cut
    assert (out / "own" / "anna" / "Zoë interview v1.2.mp4").is_file()  # the dot in the stem is kept
    assert not list(out.rglob("*long*.mp4")) and not list(out.rglob("*hidden*"))


def test_splits_are_speaker_disjoint_and_recorded(workdir):
    out = workdir / "out"
    speakers_of: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for rel, row in _labels(out).items():
        speakers_of[row["split"]].add(rel.split("/")[1])
    assert all(speakers_of.values()), speakers_of  # 4 speakers, 2 clips each: one each in val and test
    assert not (speakers_of["train"] & speakers_of["val"] or speakers_of["train"] & speakers_of["test"])
    assert not speakers_of["val"] & speakers_of["test"]
    recorded = json.loads((out / "meta" / "speakers.json").read_text())
    assert {s: set(v) for s, v in recorded.items()} == speakers_of
    report = json.loads((out / "meta" / "report.json").read_text())
    assert report["speakers_per_split"] == {s: len(v) for s, v in speakers_of.items()}


def test_rerun_does_no_work_and_a_lost_marker_redoes_one_clip(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    out = Path("out")
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    labels = {s: (out / "labels" / f"{s}.csv").read_bytes() for s in ("train", "val", "test")}
    assert main(["prepare", SRC, "out", *ARGS]) == 0
    assert json.loads((out / "meta" / "report.json").read_text())["this_run"]["processed"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes
    (out / "meta" / "lrs_done" / "anna" / "clip 1.json").unlink()  # as if killed before its marker
    capsys.readouterr()
    assert main(["prepare", SRC, "out", "--workers", "1", *ARGS]) == 0
    assert json.loads((out / "meta" / "report.json").read_text())["this_run"]["processed"] == 1
    assert {s: (out / "labels" / f"{s}.csv").read_bytes() for s in labels} == labels
    printed = capsys.readouterr().out
    assert "skipped 4" in printed and "own/dave/long: too long" in printed and "speakers per split" in printed


def test_shards_then_the_rest_equal_one_run(workdir, monkeypatch):
    """Shard 0/2 first, then an unsharded run finishes the rest; the labels equal the one-shot run's."""
    monkeypatch.chdir(workdir)
    clips = scan_folder(SRC, "sharded", speaker_from="folder", val_fraction=0.25, test_fraction=0.25, seed=1).clips
    assert main(["prepare", SRC, "sharded", "--shard", "0/2", "--workers", "1", *ARGS]) == 0
    first = json.loads(Path("sharded/meta/report.json").read_text())
    assert first["this_run"]["processed"] == len(clips[0::2]) and first["pending"] == len(clips[1::2])
    assert main(["prepare", SRC, "sharded", "--workers", "1", *ARGS]) == 0
    second = json.loads(Path("sharded/meta/report.json").read_text())
    assert second["this_run"]["processed"] == len(clips[1::2]) and second["pending"] == 0
    for split in ("train", "val", "test"):
        assert Path(f"sharded/labels/{split}.csv").read_bytes() == Path(f"out/labels/{split}.csv").read_bytes()


def test_manifest_gives_text_and_speakers(workdir, tmp_path, monkeypatch):
    """A TSV manifest is the only source of transcripts: an unlisted video is "no transcript" even with a .txt."""
    monkeypatch.chdir(tmp_path)
    src = Path("clips")
    (src / "x").mkdir(parents=True)
    shutil.copy(workdir / SRC / "anna/clip 1.mp4", src / "x" / "first, take.mp4")
    shutil.copy(workdir / SRC / "bob/b1.mkv", src / "x" / "second.mkv")
    (src / "x" / "second.txt").write_text("ignored")
    absolute = (src / "x" / "first, take.mp4").resolve()
    Path("list.tsv").write_text(f'Path\tText\tSpeaker\n{absolute}\tSays "hi", twice\tp1\n\n')
    assert main(["prepare", "clips", "prepared", "--manifest", "list.tsv", "--workers", "1", "--quiet"]) == 0
    rows = _labels(Path("prepared"))
    assert {r: v["text"] for r, v in rows.items()} == {"own/x/first, take": 'says "hi", twice'}
    report = json.loads(Path("prepared/meta/report.json").read_text())
    assert [(s["rel_path"], s["reason"], s["detail"]) for s in report["skipped"]] == [
        ("own/x/second", "no transcript", "not in the manifest")
    ]
    assert report["speaker_from"] == "column"
    assert json.loads(Path("prepared/meta/speakers.json").read_text())["train"] == ["p1"]


@pytest.mark.slow
def test_train_and_eval_read_the_output(workdir, tmp_path, monkeypatch):
    """`mome train` and `mome eval` on the prepared folder, from its working directory."""
    monkeypatch.chdir(workdir)
    fast = [
        "data.num_workers=0",
        "train.num_threads=1",
        "decode.num_beams=1",
        "decode.max_new_tokens=3",
        "data.noise_path=null",
    ]
    assert main(["train", "tiny", "data.root=out", "train.output_dir=runs/own", "train.max_steps=1", *fast]) == 0
    assert main(["eval", "runs/own", "--labels", "labels/test.csv", "--quiet", "--out", "ev", *fast]) == 0
    results = json.loads(Path("ev/results.json").read_text())
    tested = sum(1 for row in _labels(Path("out")).values() if row["split"] == "test")
    assert results["wer"]["all"]["a4_v2"]["clean"]["utterances"] == tested


# ---------------------------------------------------------------------------------------- splits, scan, errors
def test_assign_splits_is_disjoint_seeded_and_keeps_a_train_group():
    groups = {f"s{i}": 1 + i % 7 for i in range(60)}
    total = sum(groups.values())
    split = assign_splits(groups, 0.1, 0.2, seed=0)
    assert set(split) == set(groups) and set(split.values()) == {"train", "val", "test"}
    held = {s: sum(n for g, n in groups.items() if split[g] == s) for s in ("val", "test")}
    assert 0.1 * total <= held["val"] < 0.1 * total + 7 and 0.2 * total <= held["test"] < 0.2 * total + 7
    assert assign_splits(groups, 0.1, 0.2, seed=0) == split and assign_splits(groups, 0.1, 0.2, seed=1) != split
    assert set(assign_splits({"a": 5, "b": 1}, 0.5, 0.5, seed=0).values()) >= {"train"}  # never an empty train
    assert assign_splits({"only": 3}, 0.1, 0.1, seed=0) == {"only": "train"}
    # Adding a group leaves the order of the others: only groups near a boundary can move.
    more = assign_splits({**groups, "new": 1}, 0.1, 0.2, seed=0)
    assert sum(more[g] != split[g] for g in groups) <= 2


def test_clips_split_one_by_one_without_speakers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"{i:02d}.mp4").write_bytes(b"x")
        (src / f"{i:02d}.txt").write_text("words")
    clips = scan_folder(src, tmp_path / "out", val_fraction=0.25, test_fraction=0.25, seed=3).clips
    counts = {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")}
    assert counts == {"train": 20, "val": 10, "test": 10}
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)


def test_out_inside_src_is_not_scanned(tmp_path):
    src = tmp_path / "src"
    (src / "out" / "own").mkdir(parents=True)
    (src / "a.mp4").write_bytes(b"x")
    (src / "out" / "own" / "a.mp4").write_bytes(b"x")  # a previous run's crop
    assert [c.clip_id for c in scan_folder(src, src / "out").clips] == ["a"]


def _error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def small(tmp_path, monkeypatch) -> Path:
    """A working directory with `src/spk/a.mp4` (+ .txt) and `src/top.mp4`: scanned, never decoded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src" / "spk").mkdir(parents=True)
    for rel in ("spk/a", "top"):
        (tmp_path / "src" / f"{rel}.mp4").write_bytes(b"x")
        (tmp_path / "src" / f"{rel}.txt").write_text("words")
    return tmp_path


@pytest.mark.parametrize(
    ("extra", "manifest", "expected"),
    [
        (["--speaker-from", "folder"], None, "top.mp4: not in a speaker folder"),
        (["--speaker-from", "column"], None, "no speaker column"),
        (["--manifest", "missing.csv"], None, "missing.csv: manifest not found"),
        (["--manifest", "m.csv"], "file,transcript\nspk/a.mp4,hi\n", "no column path or text"),
        (["--manifest", "m.csv"], "path,text\n../elsewhere/a.mp4,hi\n", "m.csv:2: path '../elsewhere/a.mp4' leaves"),
        (["--manifest", "m.csv"], "path,text\n/tmp/a.mp4,hi\n", "m.csv:2: /tmp/a.mp4 is outside SRC"),
        (["--manifest", "m.csv"], "path,text\nspk/a.mp4,hi\nspk/a.mp4,again\n", "listed twice (also on line 2)"),
        (["--manifest", "m.csv"], "path,text\nspk/a.txt,hi\n", "spk/a.txt is not a video"),
        (["--manifest", "m.csv"], "path,text\nspk/a.mp4,hi,extra\n", "m.csv:2: 3 fields, the header has 2"),
        (["--manifest", "m.csv"], "path,text,speaker\nspk/a.mp4,hi,\n", "m.csv:2: empty speaker"),
        (["--manifest", "m.csv"], "path,text\n", "no rows under the header"),
        (["--name", "labels"], None, "--name 'labels'"),
        (["--splits", "train=0.5,val=0.6"], None, "must sum to 1"),
        (["--shard", "2/2"], None, "expected 0 <= I < N"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(small, capsys, extra, manifest, expected):
    if manifest is not None:
        Path("m.csv").write_text(manifest)
    assert expected in _error(capsys, ["prepare", "src", "out", *extra])
    assert not Path("out").exists()


def test_bad_folders_are_one_line(small, capsys):
    assert "nowhere: no such folder" in _error(capsys, ["prepare", "nowhere", "out"])
    Path("a file").write_text("x")
    assert "a file: not a folder" in _error(capsys, ["prepare", "a file", "out"])
    Path("empty").mkdir()
    (Path("empty") / "a.txt").write_text("a transcript without its video")
    assert "empty: no videos found" in _error(capsys, ["prepare", "empty", "out"])
    assert "OUT must not be SRC" in _error(capsys, ["prepare", "src", "src"])
    (Path("src") / "spk" / "a.avi").write_bytes(b"x")
    assert "would both become own/spk/a; rename one" in _error(capsys, ["prepare", "src", "out"])
    assert not Path("out").exists()


def test_symlink_out_of_src_is_refused(small, capsys):
    (small / "elsewhere").mkdir()
    (small / "elsewhere" / "b.mp4").write_bytes(b"x")
    os.symlink(small / "elsewhere" / "b.mp4", small / "src" / "spk" / "b.mp4")
    assert "only files inside SRC are read" in _error(capsys, ["prepare", "src", "out"])
    assert not Path("out").exists()


def test_out_holding_another_source_is_refused(small, capsys):
    (small / "out" / "meta").mkdir(parents=True)
    (small / "out" / "meta" / "lrs.json").write_text(json.dumps({"dataset": "lrs3", "root": "/data/LRS3"}))
    assert "already holds lrs3 (release); use another OUT" in _error(capsys, ["prepare", "src", "out"])
