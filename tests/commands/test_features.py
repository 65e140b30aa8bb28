"""`mome features`, and `mome train` / `mome eval` on cached features, as a user runs them: relative paths from
a fresh working directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mome.cli import main
from tiny import FAST_RUN

pytestmark = pytest.mark.slow


@pytest.fixture
def workdir(corpus: Path, tmp_path: Path, monkeypatch) -> Path:
    shutil.copytree(corpus, tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_features_fills_the_cache_once_and_prints_its_size(workdir: Path, capsys) -> None:
    args = ["features", "tiny", "data.root=corpus", "data.feature_cache=features", "--snr", "clean", "5", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train: encoded" in out and "test: encoded" in out and "clips/s" in out
    assert "feature cache" in out and "MiB" in out
    stores = sorted(p.name.split("-")[0] for p in Path("features").iterdir())
    assert stores == ["audio", "video"]
    assert main(args) == 0  # everything is there: nothing is encoded again
    assert capsys.readouterr().out.count("encoded 0 audio + 0 video clips") == 4  # 3 splits + the total


def test_features_refuses_a_bad_shard_in_one_line(workdir: Path, capsys) -> None:
    assert main(["features", "tiny", "data.root=corpus", "data.feature_cache=f", "--shard", "2/2"]) == 2
    assert capsys.readouterr().err.strip() == "mome: error: --shard '2/2': needs 0 <= I < N"
    assert main(["features", "tiny", "data.root=corpus"]) == 2
    assert "data.feature_cache: not set" in capsys.readouterr().err


def test_train_and_eval_on_cached_features(workdir: Path, capsys) -> None:
    """Training fills the cache on first use and reads it; eval adds the test split at its SNRs."""
    assert (
        main(
            [
                "train",
                "tiny",
                "data.root=corpus",
                "data.feature_cache=features",
                "train.output_dir=runs/c",
                "train.max_steps=2",
                *FAST_RUN,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "features train.csv: encoded" in out and "feature cache" in out
    assert main(["eval", "runs/c", "--labels", "labels/test.csv", "--snr", "clean", "0", "--quiet"]) == 0
    results = json.loads(Path("runs/c/eval/test/results.json").read_text())
    assert results["snrs"] == ["clean", "0"]
    assert all(cell["utterances"] for cell in results["wer"]["all"]["a4_v2"].values())
    assert "features test.csv at 0: encoded" in capsys.readouterr().out


def test_overrides_may_follow_the_snrs(workdir: Path, capsys) -> None:
    assert (
        main(
            [
                "features",
                "tiny",
                "--splits",
                "test",
                "--snr",
                "clean",
                "data.root=corpus",
                "data.feature_cache=features",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert "test: encoded" in capsys.readouterr().out
