"""`mome calibrate RUN [--labels labels/val.csv] [--relative 1.05]`: the cascade's threshold for a target WER.

Decodes the validation split (clean) at every rate combination, then picks the cheapest cascade (fewest LLM
input tokens per second of speech) whose WER is at most `--relative` x the finest combination's: the
confidence threshold and the coarser combinations worth trying first (`mome.evaluation.cascade`). Saved as
`<run>/calibration.json`, which `mome eval --policy cascade`, `mome transcribe --budget auto` and
`mome.load(...).transcribe(budget="auto")` read.
"""

from __future__ import annotations

import argparse
import json

from mome.commands import add_labelled_arguments, open_labelled, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.evaluation.cascade import DEFAULT_RELATIVE

    add_labelled_arguments(parser, labels="labels/val.csv", rates=False)
    parser.add_argument(
        "--relative",
        type=float,
        default=DEFAULT_RELATIVE,
        help=f"target WER as a multiple of the finest combination's (default {DEFAULT_RELATIVE})",
    )


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.commands.eval import default_out
    from mome.errors import UserError
    from mome.evaluation.cascade import calibrate, ladder, save_calibration
    from mome.evaluation.evaluate import evaluate
    from mome.runs.checkpoint import run_directory
    from mome.runs.load import model_from_payload

    if args.relative < 1:
        raise UserError(f"--relative {args.relative}: the target WER is a multiple >= 1 of the finest combination's")
    split = open_labelled(args, ())
    model, cfg = model_from_payload(split.payload, args.overrides, device=args.device)
    out = default_out(split.checkpoint, split.labels)
    results = evaluate(
        model,
        cfg,
        split.labels,
        split.root,
        split.combos,
        [None],
        out_dir=out,
        limit=args.limit,
        progress=not args.quiet,
        info={"checkpoint": str(split.checkpoint)},
    )
    rows = [json.loads(line) for line in (out / "hypotheses.jsonl").read_text(encoding="utf-8").splitlines()]
    calibration = calibrate(rows, ladder(results.combinations), results.tokens_per_second(), args.relative)
    calibration["labels"] = str(split.labels)
    path = save_calibration(run_directory(split.checkpoint), calibration)
    finest, cascade = calibration["finest"], calibration["cascade"]
    print(f"finest {finest['key']}: WER {100 * finest['wer']:.2f}% at {finest['tokens_per_second']:.3g} tokens/s")
    print(
        f"cascade {' > '.join(calibration['ladder'])}, threshold {calibration['threshold']:.4g}: WER "
        f"{100 * cascade['wer']:.2f}% at {cascade['tokens_per_second']:.3g} tokens/s "
        f"({100 * cascade['tokens_per_second'] / finest['tokens_per_second']:.0f}% of the finest's)"
    )
    print(f"wrote {path}")
    return 0
