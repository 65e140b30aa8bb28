"""`mome transcribe CHECKPOINT --video clip.mp4 [--audio clip.wav] [--rates 16,5]`: one clip -> text.

A clip without a usable modality (no face found, no audio track, silent audio, a video too short) stops a
task-specific model with one line naming the problem; a unified model (`task: any`) falls back to the
modality that is there, and stderr says which modalities and rates were used.

The clip is a prepared mouth crop (96x96, 25 fps) or a raw video of a person speaking; `--input auto` (the
default) treats exactly-96x96 frames as a mouth crop and anything else as raw (face detection and mouth crop
first), `--input crop` / `--input raw` force one. Audio comes from `--audio`, or else from the file's own
audio track. The default rates are the finest trained combination. How a clip is read: `mome.inference.inputs`;
how it is decoded: `mome.inference.api`. Prints the text on stdout, and on stderr the time of each stage (load,
read, face for raw videos, encode, decode), the modalities and rates used and the decode precision (`decode.precision`, `auto`
resolved for `--device`). `--budget auto` lets the calibrated cascade choose the rates; `--budget tokens=N`
the finest rates that fit N LLM input tokens, `--budget ms=N` the finest whose measured decode time fits
(`mome.inference.api`).
"""

from __future__ import annotations

import argparse
import sys
import time

from mome.commands import add_base_model_check, add_trusted_checkpoint, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or run directory (its newest checkpoint)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. decode.num_beams=5")
    parser.add_argument("--video", help="mouth-crop clip or raw video of a speaker (.mp4 ...)")
    parser.add_argument(
        "--input",
        choices=("auto", "crop", "raw"),
        default="auto",
        help="auto: 96x96 frames are a mouth crop, anything else a raw video (face detection)",
    )
    parser.add_argument("--audio", help="16 kHz wav (default: the audio track of --video)")
    parser.add_argument("--rates", help="rate combination, e.g. 16,5 (default: the smallest trained rates)")
    parser.add_argument(
        "--budget",
        help="auto: the calibrated cascade (`mome calibrate`); tokens=N: the finest "
        "rates whose LLM input tokens for this clip fit in N; ms=N: the finest whose decode time "
        "per utterance, measured by the run's last `mome eval`, fits in N ms",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_trusted_checkpoint(parser)
    add_base_model_check(parser)


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.config import parse_combination
    from mome.errors import UserError
    from mome.inference.api import from_payload, parse_budget
    from mome.runs.checkpoint import checkpoint_config, run_directory
    from mome.runs.load import load_checkpoint, resolve_checkpoint

    # The inputs are checked against the checkpoint's config before the (slow) model build.
    if args.video is None and args.audio is None:
        raise UserError("give a clip: --video FILE (its audio track is used too) and/or --audio FILE.wav")
    checkpoint = resolve_checkpoint(args.checkpoint)
    payload = load_checkpoint(checkpoint)
    cfg = checkpoint_config(payload, args.overrides)
    if args.rates:
        parse_combination(args.rates, cfg.model.compression)
    if args.budget:
        parse_budget(args.budget)
    start = time.perf_counter()
    recognizer = from_payload(payload, run_directory(checkpoint), args.overrides, args.device)
    load_s = time.perf_counter() - start
    result = recognizer.transcribe(args.video, args.audio, args.rates, args.budget, args.input)
    print(result.text)
    times = {"load": load_s, **result.seconds}
    stages = ", ".join(f"{k} {times[k]:.2f} s" for k in ("load", "read", "face", "encode", "decode") if k in times)
    left_out = "".join(f" ({m} left out: {why})" for m, why in result.problems.items())
    tried = f" (tried {' > '.join(result.tried)})" if len(result.tried) > 1 else ""
    print(
        f"used {' + '.join(result.modalities)}{left_out}; rates {result.rates}{tried}, {result.tokens:.0f} LLM "
        f"input tokens; confidence {result.confidence:.3f}; clip {result.duration:.2f} s; {stages}; {recognizer.precision.describe()}",
        file=sys.stderr,
    )
    return 0
