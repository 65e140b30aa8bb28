"""One module per `mome` subcommand (`add_arguments`, `run`); options shared by several are defined here."""

from __future__ import annotations

import argparse

TRUSTED_CHECKPOINT_HELP = (
    "execute the pickle of an official fairseq AV-HuBERT checkpoint (model.encoders.video.path) instead of "
    "the safe weights-only load: THIS RUNS CODE FROM THE FILE; only for files you trust (docs/data.md)"
)


def add_trusted_checkpoint(parser: argparse.ArgumentParser) -> None:
    """`--trusted-checkpoint`, off by default: the one way the command line lets a pickle run code."""
    parser.add_argument("--trusted-checkpoint", action="store_true", help=TRUSTED_CHECKPOINT_HELP)


def collect_overrides(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Move KEY=VALUE items that options taking several values (`--snr clean 0 data.root=c`) swallowed to
    `args.overrides`, so that overrides may go anywhere on the command line."""
    for name in names:
        values = getattr(args, name) or []
        args.overrides += [v for v in values if "=" in v]
        setattr(args, name, [v for v in values if "=" not in v] or None)
