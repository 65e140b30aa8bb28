"""`mome prepare SRC OUT [--manifest FILE] [--speaker-from folder|column|none] [--shard I/N]`: a folder of
talking-face videos -> mouth crops, 16 kHz wavs and label files, in the layout `mome train` and `mome eval` read.

See `mome.lrs.folder` for what is read and how splits are chosen; the crop and label stages are prepare-lrs's,
so rerunning continues an interrupted job, and a cluster array runs one `--shard I/N` per job, then once
`--labels-only`.
"""

from __future__ import annotations

import argparse

from mome.commands import add_crop_arguments, parse_shard, parse_splits, print_prepare_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="folder of videos (.mp4 .avi .mkv .webm .mov, any depth), each with its .txt")
    parser.add_argument("out", help="output corpus root (labels/, meta/, <name>/)")
    parser.add_argument(
        "--manifest", help="CSV (TSV if .tsv) with the header path,text[,speaker] instead of .txt files"
    )
    parser.add_argument(
        "--speaker-from",
        choices=("folder", "column", "none"),
        help="speakers, for speaker-disjoint splits: the first folder under SRC, the manifest's speaker column, "
        "or none (split clip by clip); default: column if the manifest has one, else none",
    )
    parser.add_argument("--splits", default="train=0.8,val=0.1,test=0.1", help="share of clips per split")
    parser.add_argument("--seed", type=int, default=0, help="which speakers (or clips) go to which split")
    parser.add_argument("--name", default="own", help="the dataset column of the labels and the media folder in OUT")
    add_crop_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mome.lrs.folder import prepare_folder
    from mome.lrs.prepare import Options

    index, count = parse_shard(args.shard)
    splits = parse_splits(args.splits)
    report = prepare_folder(
        args.src,
        args.out,
        name=args.name,
        manifest=args.manifest,
        speaker_from=args.speaker_from,
        val_fraction=splits.get("val", 0.0),
        test_fraction=splits.get("test", 0.0),
        seed=args.seed,
        shard_index=index,
        shard_count=count,
        workers=args.workers,
        options=Options(crf=args.crf, detect_size=args.detect_size, cnn_fallback=args.cnn_fallback),
        labels_only=args.labels_only,
        redo_skipped=args.redo_skipped,
        progress=not args.quiet,
    )
    print_prepare_report(report, args.out)
    speakers = report["speakers_per_split"]
    if speakers:
        print(f"speakers per split ({report['speaker_from']}): {speakers}")
    empty = [s for s, n in report["per_split"].items() if not n and splits.get(s, 0) > 0]
    if empty and not report["pending"]:
        print(
            f"warning: no utterance in {' and '.join(empty)}: too few "
            f"{'speakers' if speakers else 'clips'} to split them disjointly"
        )
    return 0
