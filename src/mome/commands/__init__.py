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
