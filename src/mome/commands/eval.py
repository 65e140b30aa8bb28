"""`mome eval CHECKPOINT --labels FILE`: WER at every rate combination x SNR (see `mome.evaluation.evaluate`).

Writes results.json, results.md, wer_vs_tokens.png and hypotheses.jsonl to `--out`
(default `<run>/eval/<labels stem>`) and prints the Markdown table of the whole set plus the decoding speed.
KEY=VALUE overrides of the checkpoint's config may go anywhere on the command line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mome.commands import add_trusted_checkpoint, collect_overrides, labelled_inputs, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or run directory (its newest checkpoint)")
    parser.add_argument(
        "overrides", nargs="*", help="KEY=VALUE config overrides, e.g. decode.num_beams=5 decode.batch_size=16"
    )
    parser.add_argument("--labels", required=True, help="label CSV (a path, or relative to the corpus root)")
    parser.add_argument("--root", help="corpus root, the same as data.root=DIR (default: the checkpoint's)")
    parser.add_argument("--rates", nargs="+", metavar="A,V", help="rate combinations, e.g. 4,2 16,5 (default: all)")
    parser.add_argument("--snr", nargs="+", default=["clean"], help="SNRs in dB or 'clean', e.g. clean 0 -5")
    parser.add_argument("--out", help="output directory (default: <run>/eval/<labels stem>)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N utterances")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable utterances (listed in results.json) instead of failing",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--policy", choices=["cascade"], help="also score the calibrated cascade (`mome calibrate`)")
    add_trusted_checkpoint(parser)
    # Let overrides follow the options too (`--labels f data.num_workers=0`).
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def default_out(checkpoint: Path, labels: Path, kind: str = "eval") -> Path:
    """`<run>/<kind>/<labels stem>`."""
    from mome.training.checkpoint import run_directory

    return run_directory(checkpoint) / kind / labels.stem


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.errors import UserError
    from mome.evaluation.cascade import load_calibration
    from mome.evaluation.evaluate import evaluate, markdown, parse_snr
    from mome.training.checkpoint import (
        checkpoint_config,
        load_checkpoint,
        model_from_payload,
        resolve_checkpoint,
        run_directory,
    )

    collect_overrides(args, ("rates", "snr"))
    args.snr = args.snr or ["clean"]
    if args.root is not None:  # the flag is a shorthand: data.root is the one place the corpus is named
        args.overrides.append(f"data.root={args.root}")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    # Every input is checked against the checkpoint's config before the (slow) model build.
    snrs = [parse_snr(s) for s in args.snr]
    checkpoint = resolve_checkpoint(args.checkpoint)
    payload = load_checkpoint(checkpoint)
    cfg = checkpoint_config(payload, args.overrides)
    combos, root, labels = labelled_inputs(args, cfg)
    cascade = load_calibration(run_directory(checkpoint)) if args.policy == "cascade" else None

    start = time.perf_counter()
    model, cfg = model_from_payload(payload, args.overrides, device=args.device)
    load_s = time.perf_counter() - start
    out = Path(args.out) if args.out else default_out(checkpoint, labels)
    info = {"checkpoint": str(checkpoint), "overrides": list(args.overrides)}
    start = time.perf_counter()
    results = evaluate(
        model,
        cfg,
        labels,
        root,
        combos,
        snrs,
        out_dir=out,
        limit=args.limit,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
        info=info,
        cascade=cascade,
    )
    seconds = time.perf_counter() - start
    print(markdown({**results, "groups": ["all"]}))
    print(f"decode precision {results['decode']['precision']} ({results['decode']['precision_reason']})")
    decoded = sum(c["utterances"] for cells in results["wer"]["all"].values() for c in cells.values())
    print(
        f"{decoded} decodes ({len(combos)} combinations x {len(results['snrs'])} SNRs) in {seconds:.1f} s "
        f"({1000 * seconds / max(decoded, 1):.0f} ms per utterance and combination; model load {load_s:.1f} s)"
    )
    if results["skipped"]:
        print(f"skipped {len(results['skipped'])} unreadable utterance(s): see results.json")
    if cascade is not None:
        print(f"(policy times per utterance: {out}/decode_times.json)")
    print(f"wrote {out}/results.json, results.md, wer_vs_tokens.png, hypotheses.jsonl")
    return 0
