"""`mome features`: fill a config's cache for its train, validation and test splits, in parallel processes.

At one clip's size (a few hundred frames) a second thread speeds an encoder up little on a CPU, so the work is
split over `workers` processes (`--shard` within `--shard`): worker w of W takes the utterances i with
i % (N W) = I + N w of shard I/N, and writes its own shards, so the workers never wait for each other.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mome.config import Config
from mome.errors import UserError
from mome.features.cache import NOT_SET, FeatureCache, FillStats
from mome.features.store import Mode, describe_cache, repair_cache
from mome.stopping import StopSignals

SPLITS = ("train", "val", "test")
TEST_SNRS = (None, 0.0)
"""The test split's default conditions (`mome features --snr`): clean and 0 dB, as `mome demo` evaluates."""


def cpu_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(device: str) -> int:
    """One process per CPU core (at most 4) on a CPU; one on a GPU, which processes would only share."""
    return 1 if device != "cpu" else max(1, min(4, cpu_cores()))


def _label_files(cfg: Config, splits: Iterable[str], required: bool) -> dict[str, Path]:
    """The label files of `splits`; a missing one is an error if `required`, else skipped with a line."""
    labels = {"train": cfg.data.train_labels, "val": cfg.data.val_labels, "test": cfg.data.test_labels}
    unknown = sorted(set(splits) - set(labels))
    if unknown:
        raise UserError(f"unknown split {', '.join(unknown)}; expected {', '.join(SPLITS)}")
    if cfg.data.feature_cache is None:
        raise UserError(NOT_SET)
    if cfg.data.root is None or not Path(cfg.data.root).is_dir():
        raise UserError(f"data.root: not a directory: {cfg.data.root}; point it at a corpus")
    files = {}
    for split in splits:
        path = Path(labels[split])
        if path.is_file():
            files[split] = path
        elif required:
            raise UserError(f"{path}: label file not found (data.{split}_labels)")
        else:
            print(f"{split}: no label file {path}; skipped")
    return files


def open_cache(cfg: Config, device: str = "cpu", mode: Mode = "index") -> FeatureCache:
    """The cache of the encoders `cfg` names, built as `mome train` builds them (the same seed, so an encoder
    made from an architecture alone gets the same random weights and the same store). `mode`: `index` for a
    filler, after `repair_cache` verified the shards (`store.Mode`)."""
    from accelerate.utils import set_seed

    from mome.models.encoders import build_audio_encoder, build_video_encoder

    set_seed(cfg.train.seed)
    encoders = {"audio": build_audio_encoder(cfg.model), "video": build_video_encoder(cfg.model)}
    return FeatureCache(cfg, {m: e.to(device) for m, e in encoders.items() if e is not None}, mode)


class _Stop:
    """Stop after the current utterance on this process's own signal or on the parent's event."""

    def __init__(self, signals: StopSignals, event: Any | None = None) -> None:
        self.signals, self.event = signals, event

    @property
    def stop(self) -> bool:
        return bool(self.signals.stop or (self.event is not None and self.event.is_set()))


def _fill(
    cfg: Config, files: dict[str, Path], snrs: list, shard: tuple[int, int], device: str, progress: bool, event=None
) -> tuple[dict[str, FillStats], bool]:
    """One process's share of every split: (stats per split, stopped early?)."""
    cache = open_cache(cfg, device)
    with StopSignals() as signals:
        stop = _Stop(signals, event)
        stats = cache.fill_files(files, snrs, shard, progress=progress, stop=stop)
    return stats, stop.stop


def _worker(cfg: Config, files, snrs, shard, device, progress, threads, trusted, event, results) -> None:
    """A spawned fill process (it inherits no context: `--trusted-checkpoint` is passed on explicitly)."""
    from mome.models.avhubert_checkpoint import trusted_checkpoints

    torch.set_num_threads(threads)
    try:
        with trusted_checkpoints(trusted):
            results.put(("done", *_fill(cfg, files, snrs, shard, device, progress, event)))
    except UserError as err:
        results.put(("error", str(err), False))
    except KeyboardInterrupt:  # a Ctrl-C before its fill began: nothing of its own to keep
        results.put(("done", {}, True))


def fill_splits(
    cfg: Config,
    splits: Iterable[str] | None = None,
    snrs: Iterable[float | None] = TEST_SNRS,
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    workers: int | None = None,
    progress: bool = True,
) -> FillStats:
    """Fill the cache for `splits` (default: every split that has a label file; `snrs`: the test split's
        conditions) with `workers` processes; prints one line per split and the cache's size. Damaged shards are set
    aside first (one line each) and their entries computed again. SIGINT / SIGTERM
        end every worker after its current utterance, keep what is done and raise `Interrupted` (the same call
        continues)."""
    from mome.models.avhubert_checkpoint import trusted_checkpoint_enabled

    files = _label_files(cfg, splits or SPLITS, required=splits is not None)
    repair_cache(Path(cfg.data.feature_cache))  # damaged shards set aside here, once: the workers refill them
    snrs = list(snrs)
    workers = workers or default_workers(device)
    start = time.perf_counter()
    with StopSignals() as signals:
        if workers == 1:
            per_split, stopped = _fill(cfg, files, snrs, shard, device, progress)
            results = [per_split]
        else:
            trusted = trusted_checkpoint_enabled()
            results, stopped = _fill_in_processes(cfg, files, snrs, shard, device, workers, progress, trusted, signals)
    total = FillStats()
    for split in files:
        stats = FillStats()
        for per_split in results:
            stats.add(per_split.get(split, FillStats()))
        stats.seconds = max((r[split].seconds for r in results if split in r), default=0.0)  # the slowest worker
        total.add(stats)
        print(f"{split}: {stats.line()}", flush=True)
    total.seconds = time.perf_counter() - start
    if stopped:
        raise signals.interrupted("features", None, "the finished shards are kept: rerun the same command to continue")
    print(f"total ({workers} worker{'s' if workers > 1 else ''}): {total.line()}")
    print(describe_cache(Path(cfg.data.feature_cache)), flush=True)
    return total


def _fill_in_processes(cfg, files, snrs, shard, device, workers, progress, trusted, signals) -> tuple[list[dict], bool]:
    """`workers` spawned processes of cores / workers threads each; worker 0 shows its progress bar. A stop
    signal here sets an event that every worker checks after each utterance (processes are never killed:
    a killed writer could leave the result queue locked)."""
    context = mp.get_context("spawn")
    results, event = context.Queue(), context.Event()
    index, count = shard
    threads = max(1, cpu_cores() // workers)
    procs = [
        context.Process(
            target=_worker,
            args=(
                cfg,
                files,
                snrs,
                (index + count * w, count * workers),
                device,
                progress and w == 0,
                threads,
                trusted,
                event,
                results,
            ),
        )
        for w in range(workers)
    ]
    done: list[dict] = []
    errors: list[str] = []
    stopped = False
    for proc in procs:
        proc.start()
    while len(done) + len(errors) < workers:
        if signals.stop:
            event.set()
        try:
            kind, value, was_stopped = results.get(timeout=0.2)
        except queue_module.Empty:
            if not any(p.is_alive() for p in procs):
                break
            continue
        if kind == "error":
            errors.append(value)
            event.set()  # the others stop too: the error is the message
        else:
            done.append(value)
            stopped = stopped or was_stopped
    for proc in procs:
        proc.join()
    if errors:
        raise UserError(errors[0])
    if len(done) < workers and not signals.stop:
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"features: {workers - len(done)} of {workers} workers died (exit codes {codes})")
    return done, stopped or signals.stop
