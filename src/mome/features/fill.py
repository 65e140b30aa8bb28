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

import torch

from mome.config import Config
from mome.errors import Interrupted, UserError
from mome.features.cache import FeatureCache, FillStats
from mome.features.store import describe_cache

SPLITS = ("train", "val", "test")
EXIT_CODES = {2: 130, 15: 143}  # SIGINT, SIGTERM -> the shell's codes


def default_workers(device: str) -> int:
    """One process per CPU core (at most 4) on a CPU; one on a GPU, which processes would only share."""
    return 1 if device != "cpu" else max(1, min(4, os.cpu_count() or 1))


def _label_files(cfg: Config, splits: Iterable[str]) -> dict[str, Path]:
    labels = {"train": cfg.data.train_labels, "val": cfg.data.val_labels, "test": cfg.data.test_labels}
    unknown = sorted(set(splits) - set(labels))
    if unknown:
        raise UserError(f"unknown split {', '.join(unknown)}; expected {', '.join(SPLITS)}")
    if cfg.data.feature_cache is None:
        raise UserError("data.feature_cache: not set; name a directory, e.g. data.feature_cache=features")
    if cfg.data.root is None or not Path(cfg.data.root).is_dir():
        raise UserError(f"data.root: not a directory: {cfg.data.root}; point it at a corpus")
    files = {split: Path(labels[split]) for split in splits}
    for split, path in files.items():
        if not path.is_file():
            raise UserError(f"{path}: label file not found (data.{split}_labels)")
    return files


def open_cache(cfg: Config, device: str = "cpu") -> FeatureCache:
    """The cache of the encoders `cfg` names, built as `mome train` builds them (the same seed, so an encoder
    made from an architecture alone gets the same random weights and the same store)."""
    from accelerate.utils import set_seed

    from mome.models.encoders import build_audio_encoder, build_video_encoder

    set_seed(cfg.train.seed)
    encoders = {"audio": build_audio_encoder(cfg.model), "video": build_video_encoder(cfg.model)}
    return FeatureCache(cfg, {m: e.to(device) for m, e in encoders.items() if e is not None})


def _fill(
    cfg: Config, files: dict[str, Path], snrs: list, shard: tuple[int, int], device: str, progress: bool
) -> tuple[dict[str, FillStats], int | None]:
    """One process's share of every split: (stats per split, the signal that stopped it or None)."""
    from mome.training.faults import StopSignals

    cache = open_cache(cfg, device)
    stats: dict[str, FillStats] = {}
    with StopSignals() as signals:
        for split, path in files.items():
            stats[split] = cache.fill(path, cache.conditions(split, snrs), shard, progress=progress, stop=signals)
            if signals.stop:
                break
    return stats, signals.signum


def _worker(cfg: Config, files, snrs, shard, device, progress, threads, results) -> None:
    torch.set_num_threads(threads)
    try:
        results.put(("done", *_fill(cfg, files, snrs, shard, device, progress)))
    except UserError as err:
        results.put(("error", str(err), None))


def fill_splits(
    cfg: Config,
    splits: Iterable[str] = SPLITS,
    snrs: Iterable[float | None] = (None, 0.0),
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    workers: int | None = None,
    progress: bool = True,
) -> FillStats:
    """Fill the cache for `splits` (`snrs`: the test split's conditions) with `workers` processes; prints one
    line per split and the cache's size. SIGINT / SIGTERM end every worker after its current utterance,
    keep what is done and raise `Interrupted` (the same call continues)."""
    files = _label_files(cfg, splits)
    snrs = list(snrs)
    workers = workers or default_workers(device)
    start = time.perf_counter()
    if workers == 1:
        per_split, signum = _fill(cfg, files, snrs, shard, device, progress)
        results = [per_split]
    else:
        results, signum = _fill_in_processes(cfg, files, snrs, shard, device, workers, progress)
    total = FillStats()
    for split in files:
        stats = FillStats()
        for per_split in results:
            stats.add(per_split.get(split, FillStats()))
        stats.seconds = max((r[split].seconds for r in results if split in r), default=0.0)  # the slowest worker
        total.add(stats)
        print(f"{split}: {stats.line()}", flush=True)
    total.seconds = time.perf_counter() - start
    if signum is not None:
        raise Interrupted(
            "features: interrupted; the finished shards are kept: rerun the same command to continue",
            EXIT_CODES.get(signum, 130),
        )
    print(f"total ({workers} worker{'s' if workers > 1 else ''}): {total.line()}")
    print(describe_cache(Path(cfg.data.feature_cache)), flush=True)
    return total


def _fill_in_processes(cfg, files, snrs, shard, device, workers, progress) -> tuple[list[dict], int | None]:
    """`workers` spawned processes of cores / workers threads each; worker 0 shows its progress bar."""
    from mome.training.faults import StopSignals

    context = mp.get_context("spawn")
    results = context.Queue()
    index, count = shard
    threads = max(1, (os.cpu_count() or 1) // workers)
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
                results,
            ),
        )
        for w in range(workers)
    ]
    done: list[dict] = []
    errors: list[str] = []
    stopped: int | None = None
    with StopSignals() as signals:
        for proc in procs:
            proc.start()
        while len(done) + len(errors) < workers:
            if signals.stop and stopped is None:
                stopped = signals.signum
                for proc in procs:
                    proc.terminate()  # SIGTERM: each worker ends its utterance and writes what it has
            try:
                kind, value, signum = results.get(timeout=0.2)
            except queue_module.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if kind == "error":
                errors.append(value)
            else:
                done.append(value)
                stopped = stopped or signum
    for proc in procs:
        proc.join()
    if errors:
        raise UserError(errors[0])
    if len(done) < workers and stopped is None:
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"features: {workers - len(done)} of {workers} workers died (exit codes {codes})")
    return done, stopped
