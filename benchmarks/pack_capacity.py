"""Packing capacity: process CPU time per training step of the demo preset at several packed-row lengths.

    .venv/bin/python benchmarks/pack_capacity.py --corpus demo_out/corpus --cache demo_out/features

The same cached batches (`data.feature_cache`, filled first if needed) go through `Trainer.train_step` padded
and packed at each capacity (in units of the longest row, `sequence.PACK_CAPACITY`), the variants interleaved
batch by batch and in alternating order, at one thread so that process CPU time is a steady measure. Prints
the mean CPU seconds per step of each variant and its ratio to the padded layout.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import torch

import mome.models.avsr as avsr
from mome.config import load_config
from mome.models.sequence import pack
from mome.training.recipe import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--cache", required=True, help="feature cache directory (filled on first use)")
    parser.add_argument("--capacities", default="1,2", help="comma-separated capacities to compare with padding")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [
        ("data.root", os.path.abspath(args.corpus)),
        ("data.feature_cache", os.path.abspath(args.cache)),
        "train.output_dir=/tmp/mome-pack-capacity",
        "train.seed=0",
        "train.num_threads=1",
    ]
    trainer = Trainer(load_config("demo", overrides), resume=False).setup()
    batches = trainer.epoch_batches()
    batches = [next(batches)["batch"] for _ in range(args.batches)]
    variants: list[float | None] = [float(c) for c in args.capacities.split(",")] + [None]  # None: padded
    seconds = {v: 0.0 for v in variants}
    for p in range(args.passes):
        for i, batch in enumerate(batches):
            for capacity in variants if (i + p) % 2 == 0 else variants[::-1]:
                trainer.cfg.train.pack_sequences = capacity is not None
                if capacity is not None:
                    avsr.pack = functools.partial(pack, capacity=capacity)
                start = time.process_time()
                trainer.train_step(batch)
                seconds[capacity] += time.process_time() - start
    steps = args.batches * args.passes
    for capacity, total in seconds.items():
        name = "padded" if capacity is None else f"packed at {capacity:g}x"
        print(f"{name:<16} {total / steps:.3f} CPU s/step  {seconds[None] / total:.2f}x vs padded")


if __name__ == "__main__":
    main()
