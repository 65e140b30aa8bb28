"""`mome eval CHECKPOINT --labels FILE`: WER at every rate combination x SNR (see `mome.evaluation.evaluate`).

Writes results.json, results.md, wer_vs_tokens.png and hypotheses.jsonl to `--out`
(default `<run>/eval/<labels stem>`) and prints the Markdown table of the whole set plus the decoding speed.
KEY=VALUE overrides of the checkpoint's config may go anywhere on the command line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mome.commands import add_labelled_arguments, open_labelled, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_labelled_arguments(parser)
    parser.add_argument(
        "--snr", nargs="+", default=["clean"], help="SNRs in dB (-30 to 60) or 'clean', e.g. clean 0 -5"
    )
    parser.add_argument("--out", help="output directory (default: <run>/eval/<labels stem>)")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable utterances (listed in results.json) instead of failing",
    )
    parser.add_argument("--policy", choices=["cascade"], help="also score the calibrated cascade (`mome calibrate`)")


def default_out(checkpoint: Path, labels: Path, kind: str = "eval") -> Path:
    """`<run>/<kind>/<labels stem>`."""
    from mome.runs.checkpoint import run_directory

    return run_directory(checkpoint) / kind / labels.stem


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.evaluation.cascade import load_calibration
    from mome.evaluation.evaluate import evaluate, markdown, parse_snr
    from mome.runs.checkpoint import run_directory
    from mome.runs.load import model_from_payload

    split = open_labelled(args, ("rates", "snr"))  # every input is checked before the (slow) model build
    snrs = [parse_snr(s) for s in args.snr or ["clean"]]
    cascade = load_calibration(run_directory(split.checkpoint)) if args.policy == "cascade" else None

    start = time.perf_counter()
    model, cfg = model_from_payload(split.payload, args.overrides, device=args.device)
    load_s = time.perf_counter() - start
    out = Path(args.out) if args.out else default_out(split.checkpoint, split.labels)
    info = {"checkpoint": str(split.checkpoint), "overrides": list(args.overrides)}
    start = time.perf_counter()
    results = evaluate(
        model,
        cfg,
        split.labels,
        split.root,
        split.combos,
        snrs,
        out_dir=out,
        limit=args.limit,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
        info=info,
        cascade=cascade,
    )
    seconds = time.perf_counter() - start
    print(markdown(results, groups=["all"]))
    print(f"decode precision {results.decode.precision} ({results.decode.precision_reason})")
    decoded = results.decodes()
    print(
        f"{decoded} decodes ({len(split.combos)} combinations x {len(results.snrs)} SNRs) in {seconds:.1f} s "
        f"({1000 * seconds / max(decoded, 1):.0f} ms per utterance and combination; model load {load_s:.1f} s)"
    )
    if results.skipped:
        print(f"skipped {len(results.skipped)} unreadable utterance(s): see results.json")
    if cascade is not None:  # measured times stay out of results.json (reproducible bytes): decode_times.json
        times = json.loads((out / "decode_times.json").read_text())
        fixed = ", ".join(f"{k} {1000 * v:.0f}" for k, v in times["seconds_per_utterance"].items())
        cascade_ms = ", ".join(f"{snr} {1000 * v:.0f}" for snr, v in times["policies"]["cascade"].items())
        print(f"decode ms per utterance: {fixed}; cascade (per SNR) {cascade_ms}")
    print(f"wrote {out}/results.json, results.md, wer_vs_tokens.png, hypotheses.jsonl")
    return 0
