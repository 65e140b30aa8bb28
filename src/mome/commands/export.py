"""`mome export RUN OUT`: the run's trainable weights (safetensors), resolved config, base-model hashes and a
model card in one folder to share; `mome eval OUT`, `mome transcribe OUT` and `mome.load(OUT)` read it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory (its newest checkpoint) or checkpoint file")
    parser.add_argument("out", type=Path, help="output folder")


def run(args: argparse.Namespace) -> int:
    from mome.runs.load import export_run

    card = export_run(Path(args.checkpoint), args.out)
    print(f"wrote {args.out}: adapter.safetensors, config.yaml, base_models.json, {card.name}")
    return 0
