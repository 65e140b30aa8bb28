"""A run directory has one trainer at a time (a lock naming its PID, taken over from a dead process, released
on exit), and metrics.csv holds each step's row once, also after a crash and a resume."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import mome.training.engine as engine
import mome.training.recipe as recipe
from mome.cli import main
from mome.config import load_config
from mome.training.lock import LOCK_FILE, RunLocked, run_lock
from mome.training.metrics import MetricsLogger
from mome.training.recipe import train
from tiny import FAST_TRAIN

HOLD = (
    "import sys, time; from pathlib import Path; from mome.training.lock import run_lock\n"
    "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)"
)


@pytest.fixture
def holder(tmp_path: Path):
    """Another process holding the lock of `tmp_path / "run"`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_trainer_stops_in_one_line_naming_the_holder(holder, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny", "train.output_dir=run", "train.max_steps=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another `mome train` (PID {holder.pid}) is training into this directory" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_lock_of_a_dead_process_is_taken_over(holder, tmp_path: Path) -> None:
    with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
        with run_lock(tmp_path / "run"):
            pass
    holder.send_signal(signal.SIGKILL)  # a crash: no cleanup ran
    holder.wait()
    with run_lock(tmp_path / "run") as path:
        assert path.read_text() == f"{os.getpid()}\n"
    assert path.read_text() == ""  # released, with no PID left behind
    with run_lock(tmp_path / "run"):  # and free again
        pass


def test_the_lock_is_released_when_training_fails(tmp_path: Path, monkeypatch) -> None:
    def broken(self):
        raise RuntimeError("a crash inside training")

    monkeypatch.setattr(recipe.Trainer, "setup", broken)
    cfg = load_config("tiny", [f"train.output_dir={tmp_path / 'run'}"])
    with pytest.raises(RuntimeError, match="a crash"):
        train(cfg)
    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_FILE).is_file()


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _kind(row: dict[str, str]) -> str:
    return "train" if row.get("loss") else "val"


def test_metrics_rows_are_keyed_by_step_and_kind(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path)
    for step in (1, 2, 3):
        log.log(step, {"loss": step, "lr": 0.1})
    log.log(3, {"val/lm_loss": 9.0})  # a validation row beside the training row of step 3
    log.log(3, {"val/lm_loss": 8.0})  # logged again (an epoch end after a resume): replaces
    log.close()
    rows = _rows(tmp_path)
    assert Counter((r["step"], _kind(r)) for r in rows) == Counter(
        {("1", "train"): 1, ("2", "train"): 1, ("3", "train"): 1, ("3", "val"): 1}
    )
    assert next(r for r in rows if _kind(r) == "val")["val/lm_loss"] == "8.0"
    resumed = MetricsLogger(tmp_path, resume_step=2)  # the checkpoint was at step 2: step 3 is computed again
    assert [r["step"] for r in _rows(tmp_path)] == ["1", "2"]
    resumed.log(3, {"loss": 3.5, "lr": 0.1})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in _rows(tmp_path)] == [("1", "1.0"), ("2", "2.0"), ("3", "3.5")]


def test_a_resume_after_a_disk_full_save_logs_each_step_once(train_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    overrides = [
        f"data.root={train_corpus}",
        f"train.output_dir={out}",
        "train.max_steps=6",
        "train.save_every_steps=2",
        *FAST_TRAIN,
    ]
    real = engine.save_checkpoint

    def disk_full_at_step_4(directory, step, *args, **kwargs):
        if step == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(directory, step, *args, **kwargs)

    monkeypatch.setattr(engine, "save_checkpoint", disk_full_at_step_4)
    with pytest.raises(OSError, match="No space left"):
        train(load_config("tiny", overrides))
    assert {r["step"] for r in _rows(out) if r.get("loss")} >= {"3", "4"}  # logged before the failed save
    monkeypatch.setattr(engine, "save_checkpoint", real)
    train(load_config("tiny", overrides))  # resumes from step 2
    keys = Counter((int(r["step"]), _kind(r)) for r in _rows(out))
    assert {step for step, kind in keys if kind == "train"} == set(range(1, 7))
    assert max(keys.values()) == 1, keys
