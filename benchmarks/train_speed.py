"""Training steps per second of the demo preset, today's path against the feature cache, packing and precision.

    .venv/bin/python benchmarks/train_speed.py --corpus demo_out/corpus --steps 10 --repeats 2
    .venv/bin/python benchmarks/train_speed.py --corpus demo_out/corpus --lip demo_out/lip_encoder.pt

The `demo` preset (AVSR, audio {4,16} x video {2,5}, real Whisper tiny.en, real SmolLM2 layers, the compact lip
encoder: the trained one with --lip, else random weights of the same cost), trained by the real recipe
(`Trainer.train_step`) on the same batches (same seed, so the same sampler), variant by variant:

    today               media decoded by DataLoader workers, both encoders run in the step, rows padded, fp32
    cache               features read from data.feature_cache (filled before timing, not timed)
    cache+packing       + the granularities' rows packed, no padding
    cache+packing+auto  + train.precision=auto (bf16 where the hardware has it natively and measures fast, else fp32)
    cache+packing+bf16  + train.precision=bf16 whatever `auto` picks: bf16 against fp32 on every machine
    loop                the last one, one forward per granularity (train.granularity_loop)
    none                the last one without adapters (adapter.kind=none)
    workers1, workers2  the last-but-two with 1 or 2 DataLoader workers (its own default, with the cache, is 0)

A step's time is wall time from asking the loader for a batch to the end of the optimiser step, so data
loading that does not keep up counts. Each variant runs --warmup + --steps steps in a block (a loader's
workers never run during another variant's steps); the blocks repeat --repeats times and the median of all
timed steps is reported. Prints `speedup <variant> <x>x` against today's path, `speedup bf16-vs-fp32` (the same
step in both precisions), `speedup batched-vs-loop`,
`overhead mome-vs-none`, and the new path's time with 0, 1 and 2 DataLoader workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

from mome.config import load_config
from mome.precision import resolve_precision
from mome.training.recipe import Trainer

NEW = ["train.pack_sequences=true", "train.precision=auto"]
VARIANTS: dict[str, list[str]] = {
    "today": ["data.feature_cache=null", "train.pack_sequences=false", "train.precision=fp32", "data.num_workers=2"],
    "cache": ["train.pack_sequences=false", "train.precision=fp32"],
    "cache+packing": ["train.pack_sequences=true", "train.precision=fp32"],
    "cache+packing+auto": NEW,
    "cache+packing+bf16": ["train.pack_sequences=true", "train.precision=bf16"],
    "loop": [*NEW, "train.granularity_loop=true"],
    "none": [*NEW, "model.adapter.kind=none"],
    "workers1": [*NEW, "data.num_workers=1"],  # the new path with DataLoader workers (default 0 when cached)
    "workers2": [*NEW, "data.num_workers=2"],
}


def trainer(args, cache: Path, out: Path, overrides: list[str]) -> Trainer:
    base = [
        ("data.root", args.corpus),
        ("data.feature_cache", cache),
        ("train.output_dir", out),
        ("train.num_threads", args.threads),
        ("train.seed", 0),
        ("train.max_steps", 100000),
    ]
    if args.lip:
        base.append(("model.encoders.video.path", args.lip))
    AcceleratorState._reset_state()  # Accelerate allows one mixed precision per process; variants differ in it
    torch.manual_seed(0)
    return Trainer(load_config("demo", base + overrides), resume=False).setup()


def time_steps(t: Trainer, warmup: int, steps: int) -> list[float]:
    """Seconds per step, loader wait included, for `steps` steps after `warmup`."""
    batches = t.epoch_batches()
    times: list[float] = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        marked = next(batches)
        assert marked["batch"] is not None, marked["failed"]
        t.train_step(marked["batch"])
        if i >= warmup:
            times.append(time.perf_counter() - start)
    del batches  # stops this loader's workers before the next variant
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="a corpus from `mome synth` (the demo's: demo_out/corpus)")
    parser.add_argument("--lip", help="a trained lip encoder (default: random compact weights, the same cost)")
    parser.add_argument("--cache", help="feature cache directory (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.corpus = os.path.abspath(args.corpus)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or Path(tmp) / "features")
        start = time.perf_counter()
        trainer(args, cache, Path(tmp) / "fill", VARIANTS["cache"])  # fills the cache (train + val), untimed
        print(f"cache ready in {time.perf_counter() - start:.0f} s", flush=True)
        names = args.variants.split(",")
        times: dict[str, list[float]] = {n: [] for n in names}
        for repeat in range(args.repeats):
            for name in names:
                t = trainer(args, cache, Path(tmp) / name, VARIANTS[name])
                times[name] += time_steps(t, args.warmup, args.steps)
                del t
                print(
                    f"[{repeat + 1}/{args.repeats}] {name}: median {statistics.median(times[name]):.3f} s/step",
                    flush=True,
                )

    median = {n: statistics.median(v) for n, v in times.items()}
    precision = resolve_precision("auto", torch.device("cpu"))
    print(
        f"\ndemo preset, {args.threads} threads, median of {args.repeats} x {args.steps} steps, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; precision auto -> {precision.precision} "
        f"({precision.reason})"
    )
    for name in names:
        print(f"{name:<20} {median[name]:.3f} s/step  {60 / median[name]:6.1f} steps/min")
    for name in names:
        if name not in ("today", "loop", "none", "cache+packing+bf16") and "today" in median:
            print(f"speedup {name} {median['today'] / median[name]:.2f}x")
    if {"cache+packing", "cache+packing+bf16"} <= set(median):
        print(f"speedup bf16-vs-fp32 {median['cache+packing'] / median['cache+packing+bf16']:.2f}x")
    if {"loop", "cache+packing+auto"} <= set(median):
        print(f"speedup batched-vs-loop {median['loop'] / median['cache+packing+auto']:.2f}x")
    if {"none", "cache+packing+auto"} <= set(median):
        print(f"overhead mome-vs-none {100 * (median['cache+packing+auto'] / median['none'] - 1):.1f}%")
    for name in ("cache+packing+auto", "workers1", "workers2"):
        if name in median:
            count = 0 if name == "cache+packing+auto" else int(name[-1])
            print(f"workers {count}: {median[name]:.3f} s/step")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "seconds": times}, indent=2))


if __name__ == "__main__":
    main()
