"""`mome train`: exact resume after kill -9, and DDP over 2 CPU processes (gloo)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed

from mome.config import load_config
from mome.data.bucketing import FrameBudgetBatchSampler
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.models.avsr import build_model
from mome.runs.load import load_checkpoint
from mome.training.recipe import train

pytestmark = pytest.mark.slow


def _overrides(root: Path, out: Path, steps: int) -> list[str]:
    return [
        f"data.root={root}",
        f"train.output_dir={out}",
        f"train.max_steps={steps}",
        "train.save_every_steps=2",
        "data.max_frames=120",
        "data.num_workers=0",
        "train.num_threads=1",
        "train.log_every_steps=1",
        "train.val_max_batches=1",
    ]


def _mome(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mome.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_resume_after_kill_matches_an_uninterrupted_run(train_corpus: Path, tmp_path: Path) -> None:
    steps = 12
    # Uninterrupted reference run.
    train(load_config("tiny", _overrides(train_corpus, tmp_path / "a", steps)))
    reference = load_checkpoint(tmp_path / "a")
    assert reference["train_state"]["progress"]["step"] == steps

    # The same run, killed with SIGKILL right after its first checkpoint ...
    proc = _mome("train", "tiny", *_overrides(train_corpus, tmp_path / "b", steps))
    deadline = time.time() + 120
    while not list((tmp_path / "b" / "checkpoints").glob("step-*.pt")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(tmp_path / "b")["train_state"]["progress"]["step"]
    assert killed_at < steps, "the run finished before it could be killed; make it longer"
    # ... then resumed by rerunning the same command.
    train(load_config("tiny", _overrides(train_corpus, tmp_path / "b", steps)))
    resumed = load_checkpoint(tmp_path / "b")
    assert resumed["train_state"]["progress"] == reference["train_state"]["progress"]
    for name, value in reference["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=0, atol=0, msg=name)
    opt_ref, opt_res = reference["train_state"]["optimizer"]["state"], resumed["train_state"]["optimizer"]["state"]
    for k in opt_ref:
        torch.testing.assert_close(opt_res[k]["exp_avg_sq"], opt_ref[k]["exp_avg_sq"], rtol=0, atol=0)
    # Logged metrics cover every step once the resume is done.
    with open(tmp_path / "b" / "metrics.csv") as f:
        assert {int(r["step"]) for r in csv.DictReader(f) if r.get("loss")} >= set(range(killed_at + 1, steps + 1))


def test_logged_rows_average_the_steps_since_the_previous_row(train_corpus: Path, tmp_path: Path) -> None:
    rows = {}
    for every in (1, 3):
        out = tmp_path / f"every-{every}"
        train(load_config("tiny", _overrides(train_corpus, out, 6) + [f"train.log_every_steps={every}"]))
        with open(out / "metrics.csv") as f:
            rows[every] = {int(r["step"]): r for r in csv.DictReader(f) if r.get("loss")}
    per_step, windowed = rows[1], rows[3]
    assert sorted(windowed) == [1, 3, 6]
    assert len({per_step[s]["loss"] for s in (4, 5, 6)}) == 3, "equal losses would not test the mean"
    for step, window in ((1, [1]), (3, [2, 3]), (6, [4, 5, 6])):
        for key in ("loss", "lm_loss"):
            mean = sum(float(per_step[s][key]) for s in window) / len(window)
            assert float(windowed[step][key]) == pytest.approx(mean, abs=2e-6), (step, key)
        assert windowed[step]["lr"] == per_step[step]["lr"]


def test_granularity_loop_and_packing_train_like_the_batched_forward(train_corpus: Path, tmp_path: Path) -> None:
    """`train.granularity_loop` changes the schedule of the computation and `train.pack_sequences` the layout of
    its rows, not the gradient. (The tiny corpus' rows are too alike to share a packed row, so this checks the
    switch; tests/models/test_packing.py checks rows that do share one.)"""
    runs = {}
    for loop, packed in ((False, True), (True, True), (False, False)):
        out = tmp_path / f"loop-{loop}-packed-{packed}"
        switches = [f"train.granularity_loop={loop}", f"train.pack_sequences={packed}"]
        last = train(load_config("tiny", _overrides(train_corpus, out, 3) + switches))
        runs[loop, packed] = (last, load_checkpoint(out)["model"])
    last_b, weights_b = runs.pop((False, True))  # the default: one packed forward
    for last_l, weights_l in runs.values():
        assert last_l["lm_loss"] == pytest.approx(last_b["lm_loss"], rel=1e-4)
        assert last_l["router/load_balance"] == pytest.approx(last_b["router/load_balance"], rel=1e-4)
        for name, value in weights_b.items():
            torch.testing.assert_close(weights_l[name], value, rtol=1e-4, atol=1e-5, msg=name)
    cfg = load_config("tiny", _overrides(train_corpus, tmp_path / "init", 3))
    set_seed(cfg.train.seed)
    initial = build_model(cfg.model).trainable_state_dict()
    step = max((weights_b[k] - v).abs().max().item() for k, v in initial.items())
    assert step > 100 * 1e-5, "training barely moved the weights: the comparison above would prove nothing"


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun not installed",
)
@pytest.mark.parametrize("loop", [False, True], ids=["batched", "granularity-loop"])
def test_ddp_two_cpu_processes(train_corpus: Path, tmp_path: Path, loop: bool) -> None:
    out = tmp_path / "ddp"
    overrides = _overrides(train_corpus, out, 2) + [f"train.granularity_loop={loop}"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = "29533" if not loop else "29534"
    result = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", port, "-m", "mome.cli", "train", "tiny", *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Both ranks print to the same pipe, so their lines may run together: match the numbers exactly.
    sums = re.findall(r"\[rank (\d)\] trainable weights checksum ([-+.0-9e]+/[-+.0-9e]+)", result.stdout)
    assert sorted(r for r, _ in sums) == ["0", "1"] and sums[0][1] == sums[1][1], result.stdout

    # The first step's (global) loss equals one process on the union of both ranks' first batches.
    with open(out / "metrics.csv") as f:
        first = next(r for r in csv.DictReader(f) if r["step"] == "1" and r.get("lm_loss"))
    cfg = load_config("tiny", overrides)
    set_seed(cfg.train.seed)
    model = build_model(cfg.model).train()
    ds = AVDataset(
        train_corpus / cfg.data.train_labels,
        train_corpus,
        cfg.data,
        train=True,
        modalities=cfg.model.compression.modalities,
        augment_seed=cfg.train.seed,
    )
    ds.set_epoch(0)
    batches = [
        next(
            iter(
                FrameBudgetBatchSampler(
                    ds.lengths,
                    cfg.data.max_frames,
                    seed=cfg.train.seed,
                    num_buckets=cfg.data.num_buckets,
                    rank=r,
                    world_size=2,
                )
            )
        )
        for r in range(2)
    ]
    batch = collate([ds[i] for b in batches for i in b])
    out_single = model(model.encode(batch), batch["texts"])
    assert float(first["lm_loss"]) == pytest.approx(out_single.lm_loss.item(), abs=2e-5)


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun not installed",
)
def test_ddp_ranks_fill_the_feature_cache_in_shares(train_corpus: Path, tmp_path: Path) -> None:
    """Each rank encodes its share of the utterances, then both read all of them and train in step."""
    from mome.features.store import FeatureStore

    cache = tmp_path / "features"
    overrides = _overrides(train_corpus, tmp_path / "ddp", 2) + [f"data.feature_cache={cache}"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    result = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", "29535", "-m", "mome.cli", "train", "tiny", *overrides],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sums = re.findall(r"\[rank (\d)\] trainable weights checksum ([-+.0-9e]+/[-+.0-9e]+)", result.stdout)
    assert sorted(r for r, _ in sums) == ["0", "1"] and sums[0][1] == sums[1][1], result.stdout
    (video,) = [FeatureStore(d) for d in cache.iterdir() if d.name.startswith("video-")]
    cfg = load_config("tiny", overrides)
    rows = sum(len(Path(f).read_text().splitlines()) for f in (cfg.data.train_labels, cfg.data.val_labels))
    indexes = list(video.directory.glob("shard-*.json"))
    written = sum(len(json.loads(index.read_text())["entries"]) for index in indexes)
    assert len(video) == written == rows  # every utterance encoded once, by one of the ranks
    assert len({index.name.split("-")[2] for index in indexes}) == 2, "both ranks should have encoded a share"
