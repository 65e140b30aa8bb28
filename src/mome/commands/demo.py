"""`mome demo`: synthesise a corpus, convert the shipped models, pretrain the lip encoder, train one MoME model for
AVSR, ASR and VSR, evaluate it on unseen speakers, and write a report. Rerun to continue after a stop."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.workflows.demo import DemoOptions

    d = DemoOptions()
    parser.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    parser.add_argument("--utterances", type=int, default=d.utterances, help="corpus size")
    parser.add_argument("--grid-fraction", type=float, default=d.grid_fraction, help="share of GRID-like sentences")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--train-speakers", type=int, default=d.train_speakers, help="distinct training speakers")
    parser.add_argument("--lip-steps", type=int, default=d.lip_steps, help="lip-encoder pretraining steps")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of the one model (default: as many as the budget holds on this machine)")  # fmt: skip
    parser.add_argument("--budget-minutes", type=float, default=d.budget_minutes,
                        help=f"time for every stage; sets the steps unless --steps does (default {d.budget_minutes:g})")  # fmt: skip
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N test utterances only")
    parser.add_argument("--preset", default=d.preset, help="training preset (default: demo)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for the training runs")


def run(args: argparse.Namespace) -> int:
    from mome.workflows.demo import DemoOptions, run_demo

    opts = DemoOptions(
        out=args.out, utterances=args.utterances, grid_fraction=args.grid_fraction, seed=args.seed, lip_steps=args.lip_steps,
        train_speakers=args.train_speakers, steps=args.steps, budget_minutes=args.budget_minutes, eval_limit=args.eval_limit, preset=args.preset,
        overrides=list(args.overrides),
    )  # fmt: skip
    report = run_demo(opts)
    print(f"\nreport: {report}")
    return 0
