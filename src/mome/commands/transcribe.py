"""`mome transcribe CHECKPOINT --video clip.mp4 [--audio clip.wav] [--rates 16,5]`: one clip -> text.

The clip is either a prepared mouth crop (96x96, 25 fps: what `mome synth` and `mome prepare-lrs` write) or
a raw video of a person speaking. `--input auto` (the default) treats exactly-96x96 frames as a mouth crop
and anything else as raw; `--input crop` / `--input raw` force one. A raw video is resampled to 25 fps by
timestamp and goes through the preparation pipeline (dlib face + 68 landmarks, smoothing, alignment to the
mean face, 96x96 mouth crop: `mome.lrs.prepare.mouth_clip`). Then the crop is transformed exactly like an
evaluation utterance (centre crop, grayscale, normalisation; audio at 16 kHz, per-utterance norm, no noise).
Audio comes from `--audio`, or else from the file's own audio track (resampled to 16 kHz mono). The default
rates are the finest trained combination (smallest rates: most tokens, usually the lowest WER).
Prints the text on stdout and the time of each stage (load, read, face for raw videos, encode, decode) on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mome.constants import FPS, MOUTH_CROP_SIZE, SAMPLE_RATE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or run directory (its newest checkpoint)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    parser.add_argument("--video", required=True, help="mouth-crop clip or raw video of a speaker (.mp4 ...)")
    parser.add_argument("--input", choices=("auto", "crop", "raw"), default="auto",
                        help="auto: 96x96 frames are a mouth crop, anything else a raw video (face detection)")
    parser.add_argument("--audio", help="16 kHz wav (default: the audio track of --video)")
    parser.add_argument("--rates", help="rate combination, e.g. 16,5 (default: the smallest trained rates)")
    parser.add_argument("--beams", type=int, help="beam width (default: decode.num_beams)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def read_raw(video: Path, need_audio: bool, times: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """A raw video -> (96x96 mouth crops at 25 fps [T, 96, 96, 3], its audio track at 16 kHz or None)."""
    from mome.data.media import MediaError, read_media
    from mome.lrs.face import FaceLandmarker
    from mome.lrs.mouth_crop import CropError
    from mome.lrs.prepare import mouth_clip

    frames, track = read_media(video, need_audio=need_audio)
    start = time.perf_counter()
    try:
        crops = mouth_clip(frames, FaceLandmarker()).crops
    except CropError as err:
        raise MediaError(video, f"cannot crop the mouth: {err}") from None
    times["face"] = time.perf_counter() - start
    return crops, track


def _audio_track(video: Path) -> np.ndarray:
    """The clip's own audio track; without one, the error says how to give the audio instead."""
    from mome.data.media import MediaError, read_audio_track

    try:
        return read_audio_track(video)
    except MediaError as err:
        if err.reason != "no audio track":
            raise
        raise MediaError(video, "no audio track (give the audio with --audio FILE.wav)") from None


def read_clip(video: Path, audio: Path | None, modalities: tuple[str, ...], crop: int, input_kind: str = "auto",
              times: dict | None = None) -> dict:
    """One clip as a collated batch of size 1, transformed like an evaluation utterance.

    Args:
        input_kind: "crop" (a prepared mouth crop), "raw" (face detection and mouth crop first) or "auto"
            (raw unless the frames are exactly 96x96).
        times: receives the time of the "face" stage for raw videos.
    """
    from mome.data.collate import collate
    from mome.constants import SAMPLES_PER_FRAME
    from mome.data.media import MediaError, cut_or_pad, read_audio, read_media, read_video
    from mome.data.transforms import audio_transform, video_transform

    rng = np.random.default_rng(0)  # unused by the evaluation transforms; they take one
    track = None
    need_track = "audio" in modalities and audio is None
    frames = read_video(video) if input_kind != "raw" else None
    if input_kind == "raw" or (input_kind == "auto" and frames.shape[1:3] != (MOUTH_CROP_SIZE, MOUTH_CROP_SIZE)):
        if "video" in modalities:
            frames, track = read_raw(video, need_track, {} if times is None else times)
        else:  # audio-only model: the frames only give the clip's length
            frames, track = read_media(video, need_audio=need_track)
    item: dict = {"id": video.stem, "text": ""}
    if "video" in modalities:
        try:
            item["video"] = video_transform(frames, False, rng, crop)
        except ValueError as err:
            raise MediaError(video, str(err)) from None
    if "audio" in modalities:
        if audio is not None:
            samples = read_audio(audio)
        else:
            samples = track if track is not None else _audio_track(video)
        # The model sees audio aligned to the video: 640 samples per frame (as in the dataset).
        item["audio"] = audio_transform(cut_or_pad(samples, SAMPLES_PER_FRAME * len(frames)), False, rng)
    return collate([item])


def run(args: argparse.Namespace) -> int:
    import torch

    from mome.config import parse_combination
    from mome.errors import UserError
    from mome.training.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint, resolve_checkpoint

    if args.beams is not None and args.beams < 1:
        raise UserError("--beams must be at least 1")
    times = {}
    # The rates and the clip are checked against the checkpoint's config before the (slow) model build.
    checkpoint = resolve_checkpoint(args.checkpoint)
    cfg = checkpoint_config(load_checkpoint(checkpoint), args.overrides)
    comp = cfg.model.compression
    combo = parse_combination(args.rates, comp) if args.rates else (
        min(comp.audio_rates) if comp.uses_audio else None, min(comp.video_rates) if comp.uses_video else None)
    start = time.perf_counter()
    batch = read_clip(Path(args.video), Path(args.audio) if args.audio else None, cfg.model.compression.modalities,
                      cfg.data.crop_size, args.input, times)
    times["read"] = time.perf_counter() - start - times.get("face", 0.0)

    start = time.perf_counter()
    model, cfg = model_from_checkpoint(checkpoint, args.overrides, device=args.device)
    if args.beams is not None:
        cfg.decode.num_beams = args.beams
    batch = {k: v.to(args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    times["load"] = time.perf_counter() - start

    with torch.no_grad():
        start = time.perf_counter()
        features = model.encode(batch)
        times["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        (text,) = model.generate(features, combo, cfg.decode)
        times["decode"] = time.perf_counter() - start
    print(text)
    seconds = len(batch["video"][0]) / FPS if "video" in batch else len(batch["audio"][0]) / SAMPLE_RATE
    stages = ", ".join(f"{k} {times[k]:.2f} s" for k in ("load", "read", "face", "encode", "decode") if k in times)
    rates = ",".join(str(r) for r in combo if r)
    print(f"rates {rates}; clip {seconds:.2f} s; {stages}", file=sys.stderr)
    return 0
