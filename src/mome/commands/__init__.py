"""One module per `mome` subcommand (`add_arguments`, `run`); options shared by several are defined here."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRUSTED_CHECKPOINT_HELP = (
    "execute the pickle of an official fairseq AV-HuBERT checkpoint (model.encoders.video.path) instead of "
    "the safe weights-only load: THIS RUNS CODE FROM THE FILE; only for files you trust (docs/data.md)"
)


def add_trusted_checkpoint(parser: argparse.ArgumentParser) -> None:
    """`--trusted-checkpoint`, off by default: the one way the command line lets a pickle run code."""
    parser.add_argument("--trusted-checkpoint", action="store_true", help=TRUSTED_CHECKPOINT_HELP)


def run_trusting(args: argparse.Namespace, body: Callable[[argparse.Namespace], int]) -> int:
    """`body(args)` with the command's `--trusted-checkpoint` choice in force, and only for its duration."""
    from mome.models.avhubert_checkpoint import trusted_checkpoints

    with trusted_checkpoints(args.trusted_checkpoint):
        return body(args)


def collect_overrides(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Move KEY=VALUE items that options taking several values (`--snr clean 0 data.root=c`) swallowed to
    `args.overrides`, so that overrides may go anywhere on the command line."""
    for name in names:
        values = getattr(args, name) or []
        args.overrides += [v for v in values if "=" in v]
        setattr(args, name, [v for v in values if "=" not in v] or None)


def labelled_inputs(args: argparse.Namespace, cfg: Any) -> tuple[list[Any], Path, Path]:
    """The rate combinations (`--rates`, else every trained one), the corpus root and the label file
    (`--labels`: a path as given, else relative to the root) of a command that reads a labelled split,
    checked before the slow model build."""
    from mome.config import absolute_path, combinations, parse_combination
    from mome.errors import UserError

    comp = cfg.model.compression
    combos = [parse_combination(r, comp) for r in args.rates] if args.rates else combinations(comp)
    if cfg.data.root is None:
        raise UserError("no corpus root: pass --root DIR (the checkpoint's config has no data.root)")
    root = Path(cfg.data.root)
    labels = Path(absolute_path(args.labels) if Path(args.labels).is_file() else absolute_path(args.labels, root))
    if not labels.is_file():
        raise UserError(f"{args.labels}: label file not found (also looked in {root})")
    return combos, root, labels
