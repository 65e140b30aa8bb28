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

from mome.commands import add_trusted_checkpoint, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.evaluation.cascade import DEFAULT_RELATIVE

    parser.add_argument("checkpoint", help="run directory (or a checkpoint file in its checkpoints/)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    parser.add_argument("--labels", default="labels/val.csv", help="validation labels (default labels/val.csv)")
    parser.add_argument("--root", help="corpus root, the same as data.root=DIR (default: the checkpoint's)")
    parser.add_argument("--relative", type=float, default=DEFAULT_RELATIVE,
                        help=f"target WER as a multiple of the finest combination's (default {DEFAULT_RELATIVE})")  # fmt: skip
    parser.add_argument("--limit", type=int, help="calibrate on the first N utterances only")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trusted_checkpoint(parser)
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.commands import labelled_inputs
    from mome.commands.eval import default_out
    from mome.errors import UserError
    from mome.evaluation.cascade import calibrate, ladder, save_calibration
    from mome.evaluation.evaluate import evaluate
    from mome.training.checkpoint import (
        checkpoint_config,
        load_checkpoint,
        model_from_payload,
        resolve_checkpoint,
        run_directory,
    )

    if args.relative < 1:
        raise UserError(f"--relative {args.relative}: the target WER is a multiple >= 1 of the finest combination's")
    if args.root is not None:
        args.overrides.append(f"data.root={args.root}")
    args.rates = None
    checkpoint = resolve_checkpoint(args.checkpoint)
    payload = load_checkpoint(checkpoint)
    cfg = checkpoint_config(payload, args.overrides)
    combos, root, labels = labelled_inputs(args, cfg)
    model, cfg = model_from_payload(payload, args.overrides, device=args.device)
    out = default_out(checkpoint, labels)
    results = evaluate(model, cfg, labels, root, combos, [None], out_dir=out, limit=args.limit,
                       progress=not args.quiet, info={"checkpoint": str(checkpoint)})  # fmt: skip
    rows = [json.loads(line) for line in (out / "hypotheses.jsonl").read_text(encoding="utf-8").splitlines()]
    tokens = {c["key"]: c["tokens_per_second"] for c in results["combinations"]}
    calibration = calibrate(rows, ladder(results["combinations"]), tokens, args.relative)
    calibration["labels"] = str(labels)
    path = save_calibration(run_directory(checkpoint), calibration)
    finest, cascade = calibration["finest"], calibration["cascade"]
    print(f"finest {finest['key']}: WER {100 * finest['wer']:.2f}% at {finest['tokens_per_second']:.3g} tokens/s")
    print(f"cascade {' > '.join(calibration['ladder'])}, threshold {calibration['threshold']:.4g}: WER "
          f"{100 * cascade['wer']:.2f}% at {cascade['tokens_per_second']:.3g} tokens/s "
          f"({100 * cascade['tokens_per_second'] / finest['tokens_per_second']:.0f}% of the finest's)")  # fmt: skip
    print(f"wrote {path}")
    return 0
