"""`mome train CONFIG [KEY=VALUE ...]`: train on the train split, validate on the validation split.

Rerunning the same command resumes from the run directory's newest intact checkpoint; `--fresh` refuses to
reuse a directory that already has one. A resume may change lengths, periods and places (`recipe.RESUMABLE`,
listed when it starts); any other config change is refused unless `--restart-optimizer` (keep the weights,
fresh optimiser and schedule). SIGINT / SIGTERM save a checkpoint and exit with 130 / 143.
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
    parser.add_argument(
        "--restart-optimizer",
        action="store_true",
        help="resume the weights with a fresh optimiser and schedule (allows any config change, e.g. train.lr)",
    )
    add_trusted_checkpoint(parser)


def run(args: argparse.Namespace) -> int:
    from mome.config import load_config
    from mome.errors import UserError
    from mome.models.avhubert_checkpoint import trusted_checkpoints
    from mome.runs.load import latest_checkpoint
    from mome.training.recipe import train

    cfg = load_config(args.config, args.overrides)
    existing = latest_checkpoint(f"{cfg.train.output_dir}/checkpoints")
    if args.fresh and existing is not None:
        raise UserError(f"train.output_dir: {cfg.train.output_dir} already holds {existing}; choose another directory")
    with trusted_checkpoints(args.trusted_checkpoint):
        metrics = train(cfg, resume=True, restart_optimizer=args.restart_optimizer)
    if metrics:
        print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("router/")))
    return 0
