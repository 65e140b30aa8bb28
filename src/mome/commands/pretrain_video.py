"""`mome pretrain-video CORPUS --out lip_encoder.pt`: train the compact lip encoder (see `mome.training.pretrain_video`).

SIGINT / SIGTERM save the run as a checkpoint of `<out>.partial/` (the format of `mome train`'s run directories)
and exit with 130 / 143; the same command continues from it.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "corpus", help="corpus root with labels/ and meta/ (`mome synth`); trains on train, scores on val"
    )
    parser.add_argument("--out", default="lip_encoder.pt", help="encoder file to write (model.encoders.video.path)")
    parser.add_argument("--arch", default="compact", help="named AV-HuBERT arch: compact (demo) or tiny (tests)")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps (the cosine schedule spans them)")
    parser.add_argument(
        "--objective",
        default="both",
        help="visemes (per-frame CE on frame_visemes), ctc-chars (CTC on characters) or both",
    )
    parser.add_argument("--seed", type=int, default=0, help="fixes initialisation, batch order and augmentation")
    parser.add_argument("--max-frames", type=int, default=320, help="frame budget of a batch (padded frames)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (warmup then cosine)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers decoding the mp4 files")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--time-mask",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="video time masks in training (data.time_mask; default off)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", default=None, help="also write the metrics to this JSON file")


def run(args: argparse.Namespace) -> int:
    from mome.training.pretrain_video import pretrain_video

    metrics = pretrain_video(
        args.corpus,
        args.out,
        steps=args.steps,
        seed=args.seed,
        arch=args.arch,
        objective=args.objective,
        max_frames=args.max_frames,
        lr=args.lr,
        num_workers=args.workers,
        threads=args.threads,
        time_mask=args.time_mask,
        progress=not args.no_progress,
    )
    scores = []
    if "val_viseme_acc" in metrics:
        scores.append(f"val viseme accuracy {100 * metrics['val_viseme_acc']:.1f}%")
    if "val_cer" in metrics:
        scores.append(f"val CER {100 * metrics['val_cer']:.1f}%")
    print(
        f"wrote {args.out} ({metrics['objective']}, {metrics['steps']} steps, {metrics['s_per_step']:.2f} s/step, "
        f"{metrics['seconds']:.0f} s): " + ", ".join(scores) + f" on {metrics['val_utterances']} val utterances"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in metrics.items() if k != "loss_history"}, f, indent=1)
    return 0
