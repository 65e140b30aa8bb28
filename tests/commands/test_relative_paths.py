"""Every command as a user types it: run from a fresh working directory with relative paths only.

The README's main command once died on its default relative `--out` (the corpus root was joined onto a label
path twice) while every test, all with absolute paths, passed. These tests use nothing but relative paths.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mome.cli import main
from tiny import FAST_RUN

pytestmark = pytest.mark.slow

SYNTH = [
    "--utterances",
    "16",
    "--splits",
    "train=0.5,val=0.25,test=0.25",
    "--seed",
    "3",
    "--babble-seconds",
    "6",
    "--workers",
    "1",
    "--grid-fraction",
    "1",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding `corpus/` made by `mome synth corpus` run inside it."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        assert main(["synth", "corpus", *SYNTH]) == 0
    assert (cwd / "corpus" / "labels" / "train.csv").is_file()
    return cwd


def _first_test_clip(corpus: Path) -> str:
    rel = (corpus / "labels" / "test.csv").read_text().splitlines()[0].split(",")[1]
    return f"corpus/{rel}"


def test_pretrain_train_eval_transcribe_with_relative_paths(workdir: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    assert (
        main(
            [
                "pretrain-video",
                "corpus",
                "--out",
                "lip.pt",
                "--arch",
                "tiny",
                "--steps",
                "2",
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert Path("lip.pt").is_file()

    assert (
        main(
            [
                "train",
                "tiny",
                "data.root=corpus",
                "train.output_dir=runs/tiny",
                "train.max_steps=2",
                "model.encoders.video.path=lip.pt",
                *FAST_RUN,
            ]
        )
        == 0
    )
    assert Path("runs/tiny/checkpoints/latest").is_file()
    saved = Path("runs/tiny/config.yaml").read_text()
    assert f"root: {workdir / 'corpus'}" in saved  # the run records where its data is, wherever it is read from

    assert main(["eval", "runs/tiny", "--labels", "labels/test.csv", "--limit", "2", "--quiet", *FAST_RUN]) == 0
    results = json.loads(Path("runs/tiny/eval/test/results.json").read_text())
    assert results["wer"]["all"]["a4_v2"]["clean"]["utterances"] == 2

    clip = _first_test_clip(Path("corpus"))
    capsys.readouterr()
    assert main(["transcribe", "runs/tiny", "--video", f"{clip}.mp4", "--audio", f"{clip}.wav", *FAST_RUN]) == 0
    assert "rates a4_v2" in capsys.readouterr().err


def test_run_moved_elsewhere_still_finds_its_data(workdir: Path, monkeypatch) -> None:
    """A run trained from one directory evaluates from another: the paths it saved do not depend on the cwd."""
    monkeypatch.chdir(workdir)
    assert (
        main(["train", "tiny", "data.root=corpus", "train.output_dir=runs/moved", "train.max_steps=1", *FAST_RUN]) == 0
    )
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert (
        main(
            ["eval", "../runs/moved", "--labels", "labels/val.csv", "--limit", "1", "--quiet", "--out", "ev", *FAST_RUN]
        )
        == 0
    )
    assert (elsewhere / "ev" / "results.json").is_file()


def test_demo_with_its_default_relative_out(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    """`mome demo` with no --out writes `demo_out/` in the working directory and completes every stage."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(workdir / "corpus", tmp_path / "demo_out" / "corpus")  # a corpus in place is reused: fast
    built_as = ["--seed", "3", "--utterances", "16", "--train-speakers", "32"]  # SYNTH's (else refused)
    args = ["demo", *built_as, "--preset", "tiny", "--lip-steps", "2", "--steps", "2", "--eval-limit", "1", *FAST_RUN]
    assert main(args) == 0
    assert Path("demo_out/README.md").is_file() and Path("demo_out/eval/mome/results.json").is_file()

    # demo_out/results.json: task -> rate key -> SNR -> WER % (video-only rates: clean only), and the seconds of
    # each stage
    summary = json.loads(Path("demo_out/results.json").read_text())
    assert set(summary["avsr"]) == {"a4_v2", "a4_v5", "a16_v2", "a16_v5"}
    assert set(summary["asr"]) == {"a4", "a16"} and set(summary["vsr"]) == {"v2", "v5"}
    for task, heard in (("avsr", {"clean", "0", "-5"}), ("asr", {"clean", "0", "-5"}), ("vsr", {"clean"})):
        for key, cells in summary[task].items():
            assert set(cells) == {"clean", "0", "-5"}, (task, key)
            assert {snr for snr, w in cells.items() if w is not None} == heard, (task, key, cells)
            assert all(isinstance(w, float) and w >= 0 for w in cells.values() if w is not None), (task, key, cells)
        assert set(summary["decode_seconds_per_utterance"][task]) == set(summary[task])
        assert all(t > 0 for t in summary["decode_seconds_per_utterance"][task].values())
    assert summary["tokens_per_second"]["avsr"]["a16_v5"] == 50 / 16 + 25 / 5
    grid = ("command", "colour", "preposition", "letter", "digit", "adverb")
    assert set(summary["word_classes"]) == {"avsr", "asr", "vsr"}  # a GRID-only corpus: every rate has a row
    for task, combos in summary["word_classes"].items():  # % of each GRID word class lost, per rate (clean)
        assert set(combos) == set(summary[task])
        assert all(set(cells) == set(grid) and all(0 <= v <= 100 for v in cells.values()) for cells in combos.values())
    assert summary["steps"] == 2 and summary["precision"] in ("fp32", "bf16") and summary["machine"]
    stages = {"corpus", "models", "lip encoder", "features", "train", "eval", "experts"}
    assert stages <= set(summary["timings"]) and all(t >= 0 for t in summary["timings"].values())
    experts = json.loads(Path("demo_out/experts/experts.json").read_text())  # the model's expert usage
    last = experts["layers"][-1]["layer"]
    assert f"experts/layer_{last}.png" in Path("demo_out/README.md").read_text()
    assert Path(f"demo_out/experts/layer_{last}.png").is_file()


def test_a_moved_corpus_is_found_through_root(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    """`--root` (= `data.root=`) on a run whose corpus moved takes the labels and the babble noise along."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(workdir / "corpus", "corpus")
    assert main(["train", "tiny", "data.root=corpus", "train.output_dir=run", "train.max_steps=1", *FAST_RUN]) == 0
    Path("corpus").rename("moved")
    args = ["eval", "run", "--root", "moved", "--labels", "labels/val.csv", "--snr", "0", "--limit", "1", "--quiet"]
    assert main([*args, *FAST_RUN]) == 0
    results = json.loads(Path("run/eval/val/results.json").read_text())
    assert results["root"] == str(tmp_path / "moved") and results["snrs"] == ["0"]
