"""`mome eval` and `mome transcribe` end to end, in-process, and their one-line errors for bad input."""

import json

import pytest

from mome.cli import main
from mome.data.labels import read_labels, write_labels
from mome.data.media import read_audio, read_video, write_video
from mome.synthetic.corpus import synthesize_corpus
from tiny import TINY_CORPUS, untrained_run

FAST = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(corpus root, run directory) holding an untrained tiny checkpoint whose config points at the corpus."""
    root = tmp_path_factory.mktemp("corpus")
    assert synthesize_corpus(root, 8, seed=5, **TINY_CORPUS)["written"] == 8
    return root, untrained_run(root, tmp_path_factory.mktemp("run"))


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mome: error: "), err
    assert "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_eval_defaults_to_run_eval_dir(run, capsys):
    root, run_dir = run
    # overrides may follow the options, even --snr / --rates that take several values
    assert (
        main(
            [
                "eval",
                str(run_dir),
                "--labels",
                "labels/test.csv",
                "--limit",
                "1",
                "--quiet",
                "--rates",
                "16,5",
                "--snr",
                "clean",
                *FAST,
            ]
        )
        == 0
    )
    out = run_dir / "eval" / "test"
    results = json.loads((out / "results.json").read_text())
    assert results["overrides"] == FAST and results["snrs"] == ["clean"]
    assert [c["key"] for c in results["combinations"]] == ["a16_v5"]
    assert results["wer"]["all"]["a16_v5"]["clean"]["utterances"] == 1
    printed = capsys.readouterr().out
    assert "| a16_v5 |" in printed and "decode precision fp32 (as requested)" in printed  # the tiny preset's
    assert results["decode"]["precision"] == "fp32"


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--labels", "x.csv"]) == 2
    _one_error_line(capsys, "no checkpoint", "nope")


def test_unknown_rate(run, capsys):
    _, run_dir = run
    assert main(["eval", str(run_dir), "--labels", "labels/test.csv", "--rates", "8,3"]) == 2
    _one_error_line(capsys, "'8,3'", "not a trained combination")
    assert main(["transcribe", str(run_dir), "--video", "x.mp4", "--rates", "8,3"]) == 2
    _one_error_line(capsys, "'8,3'")


def test_labels_with_missing_media(run, tmp_path, capsys):
    """Default: fail naming the file (a WER over fewer utterances is not comparable); --skip-bad: skip, list."""
    root, run_dir = run
    rows = read_labels(root / "labels" / "test.csv")[0]
    (root / rows[1].rel_path).with_suffix(".mp4").rename(tmp_path / "hidden.mp4")
    try:
        labels = tmp_path / "bad.csv"
        write_labels(labels, rows)
        assert (
            main(["eval", str(run_dir), "--labels", str(labels), "--quiet", "--out", str(tmp_path / "o"), *FAST]) == 2
        )
        _one_error_line(capsys, f"{rows[1].rel_path}.mp4", "missing file")
        assert (
            main(
                [
                    "eval",
                    str(run_dir),
                    "--labels",
                    str(labels),
                    "--quiet",
                    "--skip-bad",
                    "--rates",
                    "16,5",
                    "--out",
                    str(tmp_path / "o"),
                    *FAST,
                ]
            )
            == 0
        )
        results = json.loads((tmp_path / "o" / "results.json").read_text())
        assert list(results["skipped"]) == [rows[1].rel_path] and "missing file" in results["skipped"][rows[1].rel_path]
        assert results["wer"]["all"]["a16_v5"]["clean"]["utterances"] == len(rows) - 1
    finally:
        (tmp_path / "hidden.mp4").rename((root / rows[1].rel_path).with_suffix(".mp4"))


def _mux_with_audio(video_path, audio_path, out):
    """The mouth clip with its wav as an AAC track: what a camera recording would look like."""
    write_video(out, read_video(video_path), audio=read_audio(audio_path))


def test_transcribe(run, tmp_path, capsys):
    root, run_dir = run
    stem = root / read_labels(root / "labels" / "test.csv")[0][0].rel_path
    args = ["transcribe", str(run_dir), "--video", str(stem.with_suffix(".mp4")), *FAST]
    assert main([*args, "--audio", str(stem.with_suffix(".wav")), "--rates", "16,5"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert all(f"{stage} " in err for stage in ("load", "read", "encode", "decode")) and "rates a16_v5" in err
    assert "precision fp32 (as requested)" in err
    # The synthetic mp4 has no audio track: an AVSR model cannot run on it without --audio.
    assert main(args) == 2
    _one_error_line(capsys, f"{stem.name}.mp4", "no audio track")
    # A clip with its own audio track needs no --audio.
    _mux_with_audio(stem.with_suffix(".mp4"), stem.with_suffix(".wav"), tmp_path / "clip.mp4")
    assert main([*args[:3], str(tmp_path / "clip.mp4"), *args[4:]]) == 0
    assert "rates a4_v2" in capsys.readouterr().err  # default: the finest trained rates


def test_label_rows_outside_the_root_are_refused(run, tmp_path, capsys):
    """A `rel_path` that leaves the corpus root is never followed: eval names its file:line (--skip-bad: listed)."""
    root, run_dir = run
    rows = read_labels(root / "labels" / "test.csv")[0]
    labels = tmp_path / "escape.csv"
    write_labels(labels, [rows[0]])
    with open(labels, "a") as f:
        f.write("synth,../../../../../../etc/passwd,12,root\nsynth,/etc/passwd,12,root\n")
    args = ["eval", str(run_dir), "--labels", str(labels), "--quiet", "--rates", "16,5", "--out", str(tmp_path / "o")]
    assert main([*args, *FAST]) == 2
    _one_error_line(capsys, "2 bad utterance(s)", f"{labels}:2: ", "leaves the root")
    assert main([*args, "--skip-bad", *FAST]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [p.split(": ")[0] for p in results["label_problems"]] == [f"{labels}:2", f"{labels}:3"]
    assert results["wer"]["all"]["a16_v5"]["clean"]["utterances"] == 1 and not results["skipped"]


def test_transcribe_refuses_audio_longer_than_the_video(run, tmp_path, capsys):
    """3x the audio of a clip: the model would see it cut to the video's length, so transcribe refuses, as
    the dataset does, unless data.av_tolerance_frames allows it."""
    import numpy as np

    from mome.data.media import write_audio

    root, run_dir = run
    stem = root / read_labels(root / "labels" / "test.csv")[0][0].rel_path
    write_audio(tmp_path / "long.wav", np.tile(read_audio(stem.with_suffix(".wav")), 3))
    args = ["transcribe", str(run_dir), "--video", str(stem.with_suffix(".mp4")), "--audio", str(tmp_path / "long.wav")]
    assert main([*args, *FAST]) == 2
    _one_error_line(capsys, "long.wav", "frames long, video", "data.av_tolerance_frames")
    assert main([*args, *FAST, "data.av_tolerance_frames=10000"]) == 0
