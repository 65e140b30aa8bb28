"""`mome prepare-lrs ROOT OUT --dataset lrs3|lrs2 [--shard I/N]`: the LRS2/LRS3 release -> mouth crops + labels.

See `mome.lrs.prepare` for the layout and stages. Rerunning skips finished clips, so an interrupted job just
continues. On a cluster, give each job of an array its own `--shard I/N` (I from 0) and the same OUT, then
run once with `--labels-only` after the last job to write the final label files.
"""

from __future__ import annotations

import argparse

from mome.commands import add_crop_arguments, parse_shard, print_prepare_report
from mome.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="the release: LRS3 {pretrain,trainval,test}/ or LRS2 main/, pretrain/ + lists")
    parser.add_argument("out", help="output corpus root (labels/, meta/, <dataset>/)")
    parser.add_argument("--dataset", required=True, choices=("lrs3", "lrs2"))
    parser.add_argument("--max-seconds", type=float, default=16.0, help="longest pretrain segment")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.01,
        help="LRS3: share of trainval speakers held out as val (0: none, as in the papers)",
    )
    add_crop_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mome.lrs.prepare import Options, prepare_lrs

    index, count = parse_shard(args.shard)
    if args.max_seconds <= 1:
        raise UserError("--max-seconds must be more than 1")
    if not 0 <= args.val_fraction < 1:
        raise UserError("--val-fraction must be in [0, 1)")
    options = Options(
        max_seconds=args.max_seconds, crf=args.crf, detect_size=args.detect_size, cnn_fallback=args.cnn_fallback
    )
    report = prepare_lrs(
        args.root,
        args.out,
        args.dataset,
        shard_index=index,
        shard_count=count,
        workers=args.workers,
        options=options,
        val_fraction=args.val_fraction,
        labels_only=args.labels_only,
        redo_skipped=args.redo_skipped,
        progress=not args.quiet,
    )
    print_prepare_report(report, args.out)
    return 0
