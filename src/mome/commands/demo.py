"""`mome demo`: synthesise a corpus, convert the shipped models, pretrain the lip encoder, train one MoME model for
AVSR, ASR and VSR, evaluate it on unseen speakers, and write a report. Rerun to continue after a stop.
The flags are `DemoOptions`' fields (`mome.commands.options`)."""

from __future__ import annotations

import argparse

SKIP = ("snrs",)
"""`DemoOptions` fields without a flag."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.commands.options import add_option_arguments
    from mome.workflows.demo import DemoOptions

    add_option_arguments(parser, DemoOptions, skip=SKIP, positional=("overrides",))


def run(args: argparse.Namespace) -> int:
    from mome.commands.options import options_from_args
    from mome.workflows.demo import DemoOptions, run_demo

    report = run_demo(options_from_args(DemoOptions, args))
    print(f"\nreport: {report}")
    return 0
