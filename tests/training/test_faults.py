"""Faults during `mome train` / `mome pretrain-video`: stop signals save and exit nonzero, an epoch without a
batch stops the run, non-finite steps are skipped and never saved, a damaged checkpoint is passed over, and a
resume with a changed config applies or refuses the change."""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import mome.training.recipe as recipe
from mome.cli import main
from mome.config import load_config
from mome.data.labels import read_labels
from mome.errors import Interrupted, UserError
from mome.runs.load import load_checkpoint, resolve_checkpoint
from mome.training.pretrain_video import pretrain_video, train_lip_encoder
from mome.training.recipe import Trainer, train
from tiny import FAST_TRAIN

LIP = dict(arch="tiny", max_frames=150, warmup=0.0, num_workers=0, threads=1, progress=False)


def _overrides(root: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        f"data.root={root}",
        f"train.output_dir={out}",
        f"train.max_steps={steps}",
        "train.save_every_steps=2",
        *FAST_TRAIN,
        *extra,
    ]


def _steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt"))


# ------------------------------------------------------------------------------------------ signals
@pytest.mark.slow
def test_sigterm_saves_and_exits_143(train_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mome.cli", "train", "tiny", *_overrides(train_corpus, out, 500)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not _steps(out):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output[-2000:]
    assert "interrupted by SIGTERM" in output and "rerun the same command" in output
    step = load_checkpoint(out)["train_state"]["progress"]["step"]
    assert 2 <= step < 500 and _steps(out)[-1] == step  # saved where it stopped


def _signal_at_step(monkeypatch, signum: int, at: int) -> None:
    """Send `signum` to this process from inside the loop, right after step `at`."""
    after = Trainer._after_step

    def hook(self, values):
        after(self, values)
        if self.state.step == at:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(Trainer, "_after_step", hook)


def test_ctrl_c_saves_exits_130_and_the_rerun_finishes(train_corpus, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    _signal_at_step(monkeypatch, signal.SIGINT, 3)
    assert main(["train", "tiny", *_overrides(train_corpus, out, 6)]) == 130
    assert "interrupted by SIGINT" in capsys.readouterr().err
    assert load_checkpoint(out)["train_state"]["progress"]["step"] == 3
    monkeypatch.undo()
    train(load_config("tiny", _overrides(train_corpus, out, 6)))
    assert load_checkpoint(out)["train_state"]["progress"]["step"] == 6


def test_pretrain_video_interrupted_saves_a_partial_run_and_continues(train_corpus, tmp_path, monkeypatch) -> None:
    import mome.training.pretrain_video as pv

    after = pv.LipPretrainer._after_step

    def hook(self, values):
        after(self, values)
        if self.state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(pv.LipPretrainer, "_after_step", hook)
    out = tmp_path / "lip.pt"
    with pytest.raises(Interrupted, match="interrupted by SIGTERM") as err:
        pretrain_video(train_corpus, out, steps=4, seed=0, objective="visemes", **LIP)
    assert err.value.code == 143
    assert not out.exists() and pv.partial_path(out).is_dir()  # never mistaken for a finished encoder
    assert load_checkpoint(pv.partial_path(out))["train_state"]["progress"]["step"] == 2  # `mome train`'s format
    monkeypatch.undo()
    metrics = pretrain_video(train_corpus, out, steps=4, seed=0, objective="visemes", **LIP)
    assert out.is_file() and not pv.partial_path(out).exists() and len(metrics["loss_history"]) == 4
    # the continued run is the uninterrupted one, bit for bit
    whole = pretrain_video(train_corpus, tmp_path / "whole.pt", steps=4, seed=0, objective="visemes", **LIP)
    assert metrics["loss_history"] == whole["loss_history"]
    resumed, reference = (torch.load(p, weights_only=True)["model"] for p in (out, tmp_path / "whole.pt"))
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_pretrain_video_continues_only_with_the_same_settings(train_corpus, tmp_path, monkeypatch) -> None:
    import mome.training.pretrain_video as pv

    after = pv.LipPretrainer._after_step

    def hook(self, values):
        after(self, values)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(pv.LipPretrainer, "_after_step", hook)
    out = tmp_path / "lip.pt"
    with pytest.raises(Interrupted):
        pretrain_video(train_corpus, out, steps=3, seed=0, objective="visemes", **LIP)
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"train.lr: 0.002 -> 0.001; .* delete .*lip.pt.partial to start over"):
        pretrain_video(train_corpus, out, steps=3, seed=0, objective="visemes", **{**LIP, "lr": 1e-3})
    metrics = pretrain_video(train_corpus, out, steps=3, seed=0, objective="visemes", **{**LIP, "max_val": 1})
    assert len(metrics["loss_history"]) == 3 and metrics["val_utterances"] == 1  # a runtime option may change


# ------------------------------------------------------------------------------------------ no batch
@pytest.fixture
def broken_corpus(train_corpus: Path, tmp_path: Path) -> Path:
    """The train corpus with every media file empty: no utterance loads."""
    root = tmp_path / "broken"
    for sub in ("labels", "meta", "noise"):
        shutil.copytree(train_corpus / sub, root / sub)
    for split in ("train", "val"):
        for row in read_labels(root / "labels" / f"{split}.csv")[0]:
            for ext in (".mp4", ".wav"):
                path = (root / row.rel_path).with_suffix(ext)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    return root


def test_train_stops_when_the_first_epoch_yields_no_batch(broken_corpus, tmp_path, caplog) -> None:
    rows = len(read_labels(broken_corpus / "labels" / "train.csv")[0])
    caplog.set_level(logging.WARNING)
    start = time.perf_counter()
    with pytest.raises(UserError, match=rf"epoch 0 yielded no batch: {rows} of {rows} rows .*'empty file' \({rows}"):
        train(load_config("tiny", _overrides(broken_corpus, tmp_path / "run", 50, "train.max_bad_fraction=1")))
    assert time.perf_counter() - start < 60
    assert not list((tmp_path / "run").rglob("step-*.pt"))
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == rows  # once each


def test_train_refuses_a_silently_shrunken_set(train_corpus, tmp_path) -> None:
    """A quarter of the training media unreadable (as a truncated cache shard once dropped half the audio):
    the run stops as soon as more than `train.max_bad_fraction` failed, unless the user allows that share."""
    root = tmp_path / "partly"
    shutil.copytree(train_corpus, root)
    rows = read_labels(root / "labels" / "train.csv")[0]
    broken = len(rows) // 4
    for row in rows[:broken]:
        (root / f"{row.rel_path}.wav").write_bytes(b"")
    pattern = rf"train.csv: (\d) of {len(rows)} training rows left out \(\1 failed to load, 0 malformed\), "
    with pytest.raises(UserError, match=pattern + r"more than train.max_bad_fraction=0.01 allows; .*'empty file'"):
        train(load_config("tiny", _overrides(root, tmp_path / "strict", 50)))
    assert not _steps(tmp_path / "strict")
    train(load_config("tiny", _overrides(root, tmp_path / "lenient", 2, "train.max_bad_fraction=0.3")))
    assert _steps(tmp_path / "lenient") == [2]


def test_pretrain_video_stops_when_the_first_epoch_yields_no_batch(broken_corpus, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(UserError, match=r"epoch 0 yielded no batch: (\d+) of \1 rows failed .*'empty file'"):
        train_lip_encoder(broken_corpus, steps=50, seed=0, objective="visemes", **LIP)
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) <= 20


# ------------------------------------------------------------------------------------------ non-finite
def _nan_losses(monkeypatch, calls: set[int] | None) -> None:
    """Make the loss (and so every gradient) NaN at the given call numbers (None: always)."""
    real, count = recipe._distributed_lm_loss, [0]

    def poisoned(out, world):
        count[0] += 1
        loss, lm_loss, ce = real(out, world)
        if calls is None or count[0] in calls:
            return loss * math.nan, lm_loss * math.nan, ce
        return loss, lm_loss, ce

    monkeypatch.setattr(recipe, "_distributed_lm_loss", poisoned)


def test_non_finite_steps_are_skipped_and_counted(train_corpus, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    _nan_losses(monkeypatch, {2, 3})
    train(load_config("tiny", _overrides(train_corpus, out, 4)))
    payload = load_checkpoint(out)
    assert payload["train_state"]["progress"]["step"] == 4  # four real steps, two batches skipped
    assert all(torch.isfinite(t).all() for t in payload["model"].values())
    with open(out / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss")]
    assert rows[-1]["skipped_steps"] == "2.0" and all(math.isfinite(float(r["loss"])) for r in rows)


def test_non_finite_steps_in_a_row_stop_the_run_unsaved(train_corpus, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    _nan_losses(monkeypatch, None)
    with pytest.raises(UserError, match=r"3 steps in a row with a non-finite loss or gradient"):
        train(load_config("tiny", _overrides(train_corpus, out, 20, "train.max_nonfinite_steps=3")))
    assert not _steps(out)


def test_no_checkpoint_is_written_from_non_finite_weights(train_corpus, tmp_path) -> None:
    trainer = Trainer(load_config("tiny", _overrides(train_corpus, tmp_path / "run", 2))).setup()
    with torch.no_grad():
        next(iter(trainer.model.trainable_parameters())).fill_(math.inf)
    with pytest.raises(UserError, match="non-finite weights at step 0: no checkpoint written"):
        trainer.save()
    assert not _steps(tmp_path / "run")


# ------------------------------------------------------------------------------------------ resume
def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))


def test_resume_passes_over_a_damaged_newest_checkpoint(train_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    train(load_config("tiny", _overrides(train_corpus, out, 4)))
    *_, previous, newest = _steps(out)
    _damage(out / "checkpoints" / "step-00000004.pt")
    capsys.readouterr()
    train(load_config("tiny", _overrides(train_corpus, out, 6)))
    captured = capsys.readouterr()
    assert newest == 4 and "step-00000004.pt: corrupt checkpoint" in captured.err
    assert f"using step-{previous:08d}.pt" in captured.err and f"(step {previous}," in captured.out
    assert resolve_checkpoint(out) == out / "checkpoints" / "step-00000006.pt"
    assert all(torch.isfinite(t).all() for t in load_checkpoint(out)["model"].values())


def test_resume_applies_allowed_changes_and_refuses_others(train_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    train(load_config("tiny", _overrides(train_corpus, out, 2)))
    saved = (out / "config.yaml").read_text()
    for change, field in (
        ("train.lr=0.01", "train.lr: 0.003 -> 0.01"),
        ("model.adapter.mome.top_k=1", "model.adapter.mome.top_k: 2 -> 1"),
    ):
        with pytest.raises(UserError, match=rf"{field}.*--restart-optimizer"):
            train(load_config("tiny", _overrides(train_corpus, out, 4, change)))
    assert (out / "config.yaml").read_text() == saved  # a refused resume changes nothing
    capsys.readouterr()
    train(load_config("tiny", _overrides(train_corpus, out, 4, "decode.num_beams=2")))
    assert "applied decode.num_beams: 1 -> 2, train.max_steps: 2 -> 4" in capsys.readouterr().out
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 4


def test_restart_optimizer_keeps_the_weights_with_the_new_lr(train_corpus, tmp_path, capsys) -> None:
    from mome.commands.train import add_arguments

    out = tmp_path / "run"
    train(load_config("tiny", _overrides(train_corpus, out, 2)))
    capsys.readouterr()
    train(load_config("tiny", _overrides(train_corpus, out, 4, "train.lr=0.01")), restart_optimizer=True)
    assert "fresh optimiser and schedule; applied train.lr: 0.003 -> 0.01" in capsys.readouterr().out
    state = load_checkpoint(out)["train_state"]
    assert state["progress"]["step"] == 4 and state["scheduler"]["base_lrs"] == [0.01] * len(
        state["scheduler"]["base_lrs"]
    )
    parser = __import__("argparse").ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["tiny", "--restart-optimizer"]).restart_optimizer


def test_train_without_an_llm_path_names_both_ways_out(tmp_path, capsys, monkeypatch) -> None:
    """A paper preset names its LLM's architecture only: the one-line refusal names the field to set and
    `model.llm.allow_random_weights`, the other way (documented before only in docs/data.md)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "paper-llama-avsr", "train.output_dir=run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mome: error: model.llm.path: not set;") and err.count("\n") == 1
    assert "model.llm.allow_random_weights=true" in err
