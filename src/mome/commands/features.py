"""`mome features CONFIG [KEY=VALUE...]`: run the frozen encoders once over a corpus and cache their outputs.

Fills `data.feature_cache` for the train split (clean + K noisy versions), the validation split (clean) and the
test split (each `--snr`). An interrupted run keeps every finished shard, and the same command continues;
`--shard I/N` does every N-th utterance starting at I, so that many machines can fill one cache.
`mome train` and `mome eval` compute what is missing themselves; this command does it ahead of time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mome.commands import add_trusted_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name or YAML file (as for `mome train`)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. data.root=corpus data.feature_cache=f")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated: train, val, test")
    parser.add_argument("--snr", nargs="+", default=["clean", "0"], help="test-split SNRs in dB or 'clean'")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="do utterances I, I+N, I+2N ... (0 <= I < N)")
    parser.add_argument("--device", default="cpu", help="torch device of the encoders, e.g. cuda")
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
    from mome.models.avhubert_checkpoint import trusted_checkpoints

    with trusted_checkpoints(args.trusted_checkpoint):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from accelerate.utils import set_seed

    from mome.config import load_config
    from mome.errors import UserError
    from mome.evaluation.evaluate import parse_snr
    from mome.features.cache import FeatureCache, FillStats
    from mome.models.encoders import build_audio_encoder, build_video_encoder
    from mome.training.faults import StopSignals

    cfg = load_config(args.config, args.overrides)
    shard = parse_shard(args.shard)
    snrs = [parse_snr(s) for s in args.snr]
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    labels = {"train": cfg.data.train_labels, "val": cfg.data.val_labels, "test": cfg.data.test_labels}
    unknown = sorted(set(splits) - set(labels))
    if unknown:
        raise UserError(f"--splits: unknown {', '.join(unknown)}; expected train, val, test")
    if cfg.data.root is None or not Path(cfg.data.root).is_dir():
        raise UserError(f"data.root: not a directory: {cfg.data.root}; point it at a corpus")
    set_seed(cfg.train.seed)  # encoders built from an arch alone get the weights `mome train` gives them
    encoders = {"audio": build_audio_encoder(cfg.model), "video": build_video_encoder(cfg.model)}
    encoders = {m: e.to(args.device) for m, e in encoders.items() if e is not None}
    cache = FeatureCache(cfg, encoders)
    total = FillStats()
    with StopSignals() as signals:
        for split in splits:
            path = Path(labels[split])
            if not path.is_file():
                raise UserError(f"{path}: label file not found (data.{split}_labels)")
            conditions = cache.conditions(split, snrs)
            stats = cache.fill(path, conditions, shard=shard, progress=not args.quiet, stop=signals)
            total.add(stats)
            print(f"{split}: {stats.line()}", flush=True)
            if signals.stop:
                raise signals.interrupted(f"features {split}", None, "rerun the same command to continue")
    print(f"total: {total.line()}")
    print(cache.summary())
    return 0
