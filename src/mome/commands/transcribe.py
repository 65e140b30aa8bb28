"""`mome transcribe CHECKPOINT --video clip.mp4 [--audio clip.wav] [--rates 16,5]`: one clip -> text.

A clip without a usable modality (no face found, no audio track, silent audio, a video too short) stops a
task-specific model with one line naming the problem; a unified model (`task: any`) falls back to the
modality that is there, and stderr says which modalities and rates were used.

The clip is a prepared mouth crop (96x96, 25 fps) or a raw video of a person speaking; `--input auto` (the
default) treats exactly-96x96 frames as a mouth crop and anything else as raw (face detection and mouth crop
first), `--input crop` / `--input raw` force one. Audio comes from `--audio`, or else from the file's own
audio track. The default rates are the finest trained combination. How a clip is read and transcribed:
`mome.inference`. Prints the text on stdout, and on stderr the time of each stage (load, read, face for raw
videos, encode, decode) and the decode precision (`decode.precision`, `auto` resolved for `--device`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mome.commands import add_trusted_checkpoint, run_trusting


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
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_trusted_checkpoint(parser)
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.config import combination_key, parse_combination
    from mome.errors import UserError
    from mome.inference import clip_seconds, combination_for, load_clip, to_device, transcribe
    from mome.precision import resolve_precision
    from mome.training.checkpoint import checkpoint_config, load_checkpoint, model_from_payload, resolve_checkpoint

    times = {}
    # The rates and the clip are checked against the checkpoint's config before the (slow) model build.
    checkpoint = resolve_checkpoint(args.checkpoint)
    payload = load_checkpoint(checkpoint)
    cfg = checkpoint_config(payload, args.overrides)
    comp = cfg.model.compression
    if args.video is None and args.audio is None:
        raise UserError("give a clip: --video FILE (its audio track is used too) and/or --audio FILE.wav")
    requested = parse_combination(args.rates, comp) if args.rates else None
    start = time.perf_counter()
    clip = load_clip(
        Path(args.video) if args.video else None,
        Path(args.audio) if args.audio else None,
        comp.task,
        cfg.data.crop_size,
        args.input,
        times,
        tolerance=cfg.data.av_tolerance_frames,
    )
    combo = combination_for(comp, clip.modalities, requested)
    batch = clip.batch
    times["read"] = time.perf_counter() - start - times.get("face", 0.0)

    start = time.perf_counter()
    model, cfg = model_from_payload(payload, args.overrides, device=args.device)
    batch = to_device(batch, args.device)
    times["load"] = time.perf_counter() - start

    precision = resolve_precision(cfg.decode.precision, args.device)
    text = transcribe(model, batch, combo, cfg.decode, args.device, times, precision)
    print(text)
    stages = ", ".join(f"{k} {times[k]:.2f} s" for k in ("load", "read", "face", "encode", "decode") if k in times)
    left_out = "".join(f" ({m} left out: {why})" for m, why in clip.problems.items())
    print(f"used {' + '.join(clip.modalities)}{left_out}; rates {combination_key(combo)}; clip "
          f"{clip_seconds(batch):.2f} s; {stages}; {precision.describe()}", file=sys.stderr)  # fmt: skip
    return 0
