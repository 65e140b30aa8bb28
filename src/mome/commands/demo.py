"""`mome demo`: synthesise a corpus, convert the shipped models, pretrain the lip encoder, train MoME, an
audio-only baseline and a video-only model, evaluate them on unseen speakers, and write a report. Rerun to continue after a stop."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.demo import DemoOptions

    d = DemoOptions()
    parser.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    parser.add_argument("--utterances", type=int, default=d.utterances, help="corpus size")
    parser.add_argument("--grid-fraction", type=float, default=d.grid_fraction, help="share of GRID-like sentences")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--lip-steps", type=int, default=d.lip_steps, help="lip-encoder pretraining steps")
    parser.add_argument("--steps", type=int, default=d.avsr_steps, help="training steps of the AVSR and ASR models")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N test utterances only")
    parser.add_argument("--no-asr-baseline", action="store_true", help="skip the audio-only baseline")
    parser.add_argument("--vsr-steps", type=int, default=d.vsr_steps, help="steps of the video-only model (0: skip it)")
    parser.add_argument("--preset", default=d.preset, help="training preset (default: demo)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for the training runs")


def run(args: argparse.Namespace) -> int:
    from mome.demo import DemoOptions, run_demo

    opts = DemoOptions(
        out=args.out, utterances=args.utterances, grid_fraction=args.grid_fraction, seed=args.seed, lip_steps=args.lip_steps,
        avsr_steps=args.steps, asr_steps=args.steps, vsr_steps=args.vsr_steps, eval_limit=args.eval_limit,
        asr_baseline=not args.no_asr_baseline, preset=args.preset, overrides=list(args.overrides),
    )  # fmt: skip
    report = run_demo(opts)
    print(f"\nreport: {report}")
    return 0
