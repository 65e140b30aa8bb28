"""`mome prepare-lrs ROOT OUT --dataset lrs3|lrs2 [--shard I/N]`: the LRS2/LRS3 release -> mouth crops + labels.

See `mome.lrs.prepare` for the layout and stages. Rerunning skips finished clips, so an interrupted job just
continues. On a cluster, give each job of an array its own `--shard I/N` (I from 0) and the same OUT, then
run once with `--labels-only` after the last job to write the final label files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mome.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="the release: LRS3 {pretrain,trainval,test}/ or LRS2 main/, pretrain/ + lists")
    parser.add_argument("out", help="output corpus root (labels/, meta/, <dataset>/)")
    parser.add_argument("--dataset", required=True, choices=("lrs3", "lrs2"))
    parser.add_argument("--shard", default="0/1", help="I/N: process clips I, I+N, I+2N... (I from 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--max-seconds", type=float, default=16.0, help="longest pretrain segment")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.01,
        help="LRS3: share of trainval speakers held out as val (0: none, as in the papers)",
    )
    parser.add_argument("--crf", type=int, default=20, help="x264 quality of the crops (lower: larger, closer)")
    parser.add_argument("--detect-size", type=int, default=640, help="detect faces on frames downscaled to this")
    parser.add_argument("--cnn-fallback", action="store_true", help="also try dlib's CNN detector (slow)")
    parser.add_argument("--labels-only", action="store_true", help="only rebuild labels and report from markers")
    parser.add_argument("--redo-skipped", action="store_true", help="process skipped clips again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 0/8") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text!r}: expected 0 <= I < N")
    return index, count


def run(args: argparse.Namespace) -> int:
    from mome.lrs.prepare import Options, prepare_lrs

    index, count = _parse_shard(args.shard)
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
    run_ = report["this_run"]
    if run_["processed"]:
        print(
            f"shard {run_['shard']}: {run_['processed']} clips, {run_['frames']} frames in {run_['seconds']} s "
            f"({run_['frames_per_second']} frames/s on {run_['workers']} processes)"
        )
    print(
        f"{report['done']}/{report['clips']} clips done ({report['pending']} pending): {report['written']} "
        f"utterances, {report['hours']} h, per split {report['per_split']}"
    )
    if report["skipped"]:
        print(
            f"skipped {len(report['skipped'])} {report['skipped_reasons']} "
            f"(see {Path(args.out) / 'meta' / 'report.json'}):"
        )
        for item in report["skipped"][:10]:
            print(f"  {item['rel_path']}: {item['detail']}")
    return 0
