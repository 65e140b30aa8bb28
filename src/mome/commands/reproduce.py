"""`mome reproduce`: train MoME, its ablations and the baselines on one synthetic corpus, each until its validation
WER stops improving (or a cap), evaluate them clean and at 0 dB, and say whether each of the paper's claims holds.
Rerun to continue after a stop."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds like 0,1; got {text!r}")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.workflows.reproduce_plan import QUICK, ReproduceOptions

    d = ReproduceOptions()
    parser.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    parser.add_argument("--quick", action="store_true",
                        help=f"the same code with tiny steps and data, in minutes ({QUICK})")  # fmt: skip
    parser.add_argument("--seeds", type=_seeds, default=d.seeds, help="training seeds of the runs the claims "
                        "compare (MoME-MHSA, its small and per-granularity-router variants, MTSK MS/SS/MSS; the first "
                        f"seeds every other run; default {','.join(map(str, d.seeds))})")  # fmt: skip
    parser.add_argument("--steps", type=int, help="the cap: the most training steps of a run, and the span of its "
                        f"learning-rate schedule (default {d.steps})")  # fmt: skip
    parser.add_argument("--plateau-every", type=int, help="validation-WER check period: a run stops once the best WER "
                        "of its last quarter of steps is not 1 point below the best before "
                        f"(default {d.plateau_every})")  # fmt: skip
    parser.add_argument("--min-steps", type=int, help=f"no plateau stop before this step (default {d.min_steps})")
    parser.add_argument("--utterances", type=int, help=f"corpus size (default {d.utterances})")
    parser.add_argument("--lip-steps", type=int, help=f"lip-encoder pretraining steps (default {d.lip_steps})")
    parser.add_argument("--eval-limit", type=int, help="evaluate on the first N test utterances only")
    parser.add_argument("--preset", default=d.preset, help="training preset (default: demo)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for every run")


def run(args: argparse.Namespace) -> int:
    from mome.workflows.reproduce import run_reproduce
    from mome.workflows.reproduce_plan import QUICK, ReproduceOptions

    given = {f.name: getattr(args, f.name) for f in fields(ReproduceOptions) if getattr(args, f.name, None) is not None}
    options = {**(QUICK if args.quick else {}), **given, "overrides": list(args.overrides)}
    report = run_reproduce(ReproduceOptions(**options))
    print(f"\nreport: {report}")
    return 0
