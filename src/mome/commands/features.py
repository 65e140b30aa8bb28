"""`mome features CONFIG [KEY=VALUE...]`: run the frozen encoders once over a corpus and cache their outputs.

Fills `data.feature_cache` for the train split (clean + K noisy versions), the validation split (clean) and the
test split (each `--snr`). An interrupted run keeps every finished shard, and the same command continues;
`--shard I/N` does every N-th utterance starting at I, so that many machines can fill one cache.
`mome train` and `mome eval` compute what is missing themselves; this command does it ahead of time.
"""

from __future__ import annotations

import argparse

from mome.commands import add_trusted_checkpoint, collect_overrides, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name or YAML file (as for `mome train`)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. data.root=corpus data.feature_cache=f")
    parser.add_argument("--splits", help="comma-separated: train, val, test (default: those with a label file)")
    parser.add_argument("--snr", nargs="+", help="test-split SNRs in dB or 'clean' (default: clean 0)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="do utterances I, I+N, I+2N ... (0 <= I < N)")
    parser.add_argument("--device", default="cpu", help="torch device of the encoders, e.g. cuda")
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU core up to 4; 1 on a GPU)")
    add_trusted_checkpoint(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def parse_shard(text: str) -> tuple[int, int]:
    from mome.errors import UserError

    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 0/8") from None
    if not 0 <= index < count:
        raise UserError(f"--shard {text!r}: needs 0 <= I < N")
    return index, count


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.config import load_config
    from mome.errors import UserError
    from mome.evaluation.evaluate import parse_snr
    from mome.features.fill import TEST_SNRS, fill_splits

    collect_overrides(args, ("snr",))
    cfg = load_config(args.config, args.overrides)
    shard = parse_shard(args.shard)
    snrs = [parse_snr(s) for s in args.snr] if args.snr else list(TEST_SNRS)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits is not None else None
    if splits == []:
        raise UserError("--splits: name at least one of train, val, test")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    fill_splits(cfg, splits, snrs, shard, device=args.device, workers=args.workers, progress=not args.quiet)
    return 0
