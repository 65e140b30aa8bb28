"""`mome reproduce`: train MoME, its ablations and the baselines on one synthetic corpus, each until its validation
WER stops improving (or a cap), evaluate them clean and at 0 dB, and say whether each of the paper's claims holds.
Rerun to continue after a stop. The flags are `ReproduceOptions`' fields (`mome.commands.options`)."""

from __future__ import annotations

import argparse


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds like 0,1; got {text!r}")
    return seeds


def _methods(text: str) -> list[str]:
    """The comma-separated keys; which keys exist, `ReproduceOptions` checks (one line, for the API too)."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys or len(set(keys)) != len(keys):
        raise argparse.ArgumentTypeError(f"expected distinct method keys like mome-mhsa,mtsk-ms; got {text!r}")
    return keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.commands.options import add_option_arguments, field_docs
    from mome.workflows.reproduce_plan import METHOD_KEYS, NO_FLAG, QUICK, ReproduceOptions

    docs = field_docs(ReproduceOptions)
    quick = f"{docs['quick']} ({QUICK})"
    methods = f"{docs['methods']} Keys: {', '.join(METHOD_KEYS)}."
    add_option_arguments(
        parser,
        ReproduceOptions,
        skip=NO_FLAG,
        positional=("overrides",),
        overrides={"seeds": {"type": _seeds}, "quick": {"help": quick}, "methods": {"type": _methods, "help": methods}},
    )


def run(args: argparse.Namespace) -> int:
    from mome.commands.options import options_from_args
    from mome.workflows.reproduce import run_reproduce
    from mome.workflows.reproduce_plan import QUICK, ReproduceOptions

    report = run_reproduce(options_from_args(ReproduceOptions, args, QUICK if args.quick else {}))
    print(f"\nreport: {report}")
    return 0
