"""`mome synth OUT`: generate the synthetic audio-visual corpus (see `mome.synthetic.corpus`).

OUT must be new or empty unless `--overwrite` is given: writing into an existing corpus replaces its labels
and leaves its other media unlisted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mome.commands import parse_splits
from mome.constants import SYNTH_SPEAKERS
from mome.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output corpus root (labels/, meta/, noise/, synth/)")
    parser.add_argument("--utterances", type=int, default=2000, help="number of utterances over all splits")
    parser.add_argument("--seed", type=int, default=0, help="the corpus is a function of this seed")
    parser.add_argument("--grid-fraction", type=float, default=0.5, help="share of GRID sentences (rest: open grammar)")
    parser.add_argument("--engines", default="flite,espeak", help="comma-separated TTS engines: flite, espeak")
    parser.add_argument("--splits", default="train=0.8,val=0.1,test=0.1", help="share of utterances per split")
    parser.add_argument(
        "--train-speakers",
        type=int,
        default=None,
        help="distinct training speakers (default "
        f"{SYNTH_SPEAKERS['train']}; the val/test/babble speakers do not depend on it)",
    )
    parser.add_argument("--babble-seconds", type=float, default=60.0, help="length of noise/babble.wav (0: none)")
    parser.add_argument(
        "--fixed-voices",
        action="store_true",
        help="no per-speaker rate and pitch: speakers of one flite voice sound alike across splits",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--preview", action="store_true", help="also write meta/preview.png (contact sheet)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty OUT (its labels are replaced; media of an old corpus not rewritten stay)",
    )


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over an existing corpus by accident: its labels would be replaced, its media orphaned."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out}: not empty (an existing corpus?); choose another OUT or pass --overwrite")


def run(args: argparse.Namespace) -> int:
    from mome.synthetic.corpus import synthesize_corpus

    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    if not engines or set(engines) - {"flite", "espeak"}:
        raise UserError(f"--engines {args.engines!r}: choose from flite, espeak")
    if args.utterances < 1:
        raise UserError("--utterances must be at least 1")
    if not 0.0 <= args.grid_fraction <= 1.0:
        raise UserError("--grid-fraction must be in [0, 1]")
    if args.train_speakers is not None and args.train_speakers < 1:
        raise UserError("--train-speakers must be at least 1")
    _check_out(Path(args.out), args.overwrite)
    start = time.perf_counter()
    try:
        report = synthesize_corpus(
            args.out,
            args.utterances,
            args.seed,
            grid_fraction=args.grid_fraction,
            engines=engines,
            split_fractions=parse_splits(args.splits),
            speakers_per_split={"train": args.train_speakers} if args.train_speakers else None,
            babble_seconds=args.babble_seconds,
            fixed_voices=args.fixed_voices,
            workers=args.workers,
        )
    except ValueError as err:  # more speakers than voices, a split without speakers
        raise UserError(f"mome synth: {err}") from None
    seconds = time.perf_counter() - start
    print(
        f"wrote {report['written']}/{report['requested']} utterances ({report['hours'] * 60:.1f} min of speech) "
        f"to {args.out} in {seconds:.1f} s: {report['per_split']}"
    )
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} (see {Path(args.out) / 'meta' / 'report.json'}):")
        for item in report["skipped"][:10]:
            print(f"  {item['rel_path']}: {item['reason']}")
    if args.preview:
        from mome.synthetic.preview import write_preview

        print(f"preview: {write_preview(args.out, Path(args.out) / 'meta' / 'preview.png')}")
    return 0
