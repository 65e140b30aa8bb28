"""`mome train CONFIG [KEY=VALUE ...]`: train on the train split, validate on the validation split.

Rerunning the same command resumes from the run directory's newest checkpoint; `--fresh` refuses to
reuse a directory that already has one.
"""

from __future__ import annotations

import argparse

from mome.commands import add_trusted_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name or YAML file")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. data.root=corpus train.max_steps=400")
    parser.add_argument(
        "--fresh", action="store_true", help="fail instead of resuming if the run directory has a checkpoint"
    )
    add_trusted_checkpoint(parser)


def run(args: argparse.Namespace) -> int:
    from mome.config import load_config
    from mome.errors import UserError
    from mome.models.avhubert_checkpoint import trusted_checkpoints
    from mome.training.checkpoint import latest_checkpoint
    from mome.training.recipe import train

    cfg = load_config(args.config, args.overrides)
    existing = latest_checkpoint(f"{cfg.train.output_dir}/checkpoints")
    if args.fresh and existing is not None:
        raise UserError(f"train.output_dir: {cfg.train.output_dir} already holds {existing}; choose another directory")
    with trusted_checkpoints(args.trusted_checkpoint):
        metrics = train(cfg, resume=True)
    if metrics:
        print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("router/")))
    return 0
