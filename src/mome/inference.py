"""One clip -> text with a loaded model: the library side of `mome transcribe`.

The clip is either a prepared mouth crop (96x96, 25 fps: what `mome synth` and `mome prepare-lrs` write) or
a raw video of a person speaking. `input_kind="auto"` treats exactly-96x96 frames as a mouth crop and
anything else as raw; "crop" / "raw" force one. A raw video is resampled to 25 fps by timestamp and goes
through the preparation pipeline (dlib face + 68 landmarks, smoothing, alignment to the mean face, 96x96
mouth crop: `mome.lrs.prepare.mouth_clip`). Then the clip becomes model inputs exactly like an evaluation
utterance (`mome.data.transforms.utterance_inputs`: centre crop, grayscale, normalisation; audio at 16 kHz,
per-utterance norm, no noise). Audio comes from a separate file, or else from the video's own audio track
(resampled to 16 kHz mono). Audio and video lengths that disagree by more than `data.av_tolerance_frames`
are refused, as the dataset refuses such an utterance. Encoding and generation run under the autocast of
`decode.precision` (`auto`: bf16 where the device has native bf16 matmul, else fp32; `mome.precision`).

    batch = load_clip(Path("clip.mp4"), None, cfg.model.compression.modalities, cfg.data.crop_size)
    text = transcribe(model, batch, finest_combination(cfg.model.compression), cfg.decode)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mome.constants import FPS, MODEL_CROP_SIZE, MOUTH_CROP_SIZE, SAMPLE_RATE, SAMPLES_PER_FRAME
from mome.data.collate import collate
from mome.data.media import MediaError, read_audio, read_audio_track, read_media, read_video
from mome.data.transforms import utterance_inputs
from mome.precision import Resolved, autocast, resolve_precision

if TYPE_CHECKING:
    from mome.config import Combination, CompressionConfig, DecodeConfig
    from mome.models.avsr import AVSRModel

INPUT_KINDS = ("auto", "crop", "raw")


def read_raw(video: Path, need_audio: bool, times: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """A raw video -> (96x96 mouth crops at 25 fps [T, 96, 96, 3], its audio track at 16 kHz or None).

    The face stage's time goes to `times["face"]`; dlib is imported only here (raw videos need it).
    """
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
    try:
        return read_audio_track(video)
    except MediaError as err:
        if err.reason != "no audio track":
            raise
        raise MediaError(video, "no audio track (give the audio with --audio FILE.wav)") from None


def _check_lengths(path: Path, samples: np.ndarray, frames: int, tolerance: int | None) -> None:
    """The model sees audio cut or padded to the video's length: refuse to drop seconds of speech silently."""
    audio_frames = len(samples) / SAMPLES_PER_FRAME
    if tolerance is not None and abs(audio_frames - frames) > tolerance:
        raise MediaError(
            path,
            f"audio is {audio_frames:.1f} frames long, video {frames} frames (tolerance {tolerance}; "
            "data.av_tolerance_frames=N accepts more)",
        )


def load_clip(
    video: Path,
    audio: Path | None,
    modalities: tuple[str, ...],
    crop: int = MODEL_CROP_SIZE,
    input_kind: str = "auto",
    times: dict | None = None,
    tolerance: int | None = None,
) -> dict:
    """One clip as a collated batch of size 1, with the model inputs of an evaluation utterance.

    Args:
        audio: a 16 kHz wav; None = the audio track of `video` (when `modalities` has audio).
        input_kind: "crop" (a prepared mouth crop), "raw" (face detection and mouth crop first) or "auto"
            (raw unless the frames are exactly 96x96).
        times: receives the time of the "face" stage for raw videos.
        tolerance: largest accepted |audio frames - video frames| (`data.av_tolerance_frames`); beyond it a
            `MediaError`, as the dataset refuses such an utterance. None: no check.
    """
    rng = np.random.default_rng(0)  # unused by the evaluation transforms; they take one
    track = None
    need_track = "audio" in modalities and audio is None
    frames = read_video(video) if input_kind != "raw" else None
    if input_kind == "raw" or (input_kind == "auto" and frames.shape[1:3] != (MOUTH_CROP_SIZE, MOUTH_CROP_SIZE)):
        if "video" in modalities:
            frames, track = read_raw(video, need_track, {} if times is None else times)
        else:  # audio-only model: the frames only give the clip's length
            frames, track = read_media(video, need_audio=need_track)
    samples = None
    if "audio" in modalities:
        if audio is not None:
            samples = read_audio(audio)
        else:
            samples = track if track is not None else _audio_track(video)
        _check_lengths(audio or video, samples, len(frames), tolerance)
    # The model sees audio aligned to the video: SAMPLES_PER_FRAME samples per frame (as in the dataset).
    try:
        inputs, _ = utterance_inputs(frames if "video" in modalities else None, samples, len(frames), False, rng, crop)
    except ValueError as err:  # frames smaller than the crop
        raise MediaError(video, str(err)) from None
    return collate([{"id": video.stem, "text": "", **inputs}])


def finest_combination(comp: CompressionConfig) -> Combination:
    """The smallest trained rates (most tokens, usually the lowest WER): the default combination."""
    return (min(comp.audio_rates) if comp.uses_audio else None, min(comp.video_rates) if comp.uses_video else None)


def clip_seconds(batch: dict) -> float:
    """Duration of a loaded clip, from its video frames (or its audio samples for an audio-only model)."""
    return len(batch["video"][0]) / FPS if "video" in batch else len(batch["audio"][0]) / SAMPLE_RATE


def to_device(batch: dict, device: str | torch.device) -> dict:
    """The batch with its tensors on `device` (a no-op for tensors already there)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def transcribe(
    model: AVSRModel,
    batch: dict,
    combo: Combination,
    decode: DecodeConfig,
    device: str | torch.device = "cpu",
    times: dict | None = None,
    precision: Resolved | None = None,
) -> str:
    """The transcript of a one-clip batch at rate combination `combo`; `times` receives "encode" and "decode".

    `precision`: the autocast to run under, resolved by the caller (to report it); default: `decode.precision`
    resolved for `device`."""
    times = {} if times is None else times
    batch = to_device(batch, device)
    precision = precision or resolve_precision(decode.precision, device)
    with torch.no_grad(), autocast(precision.precision, device):
        start = time.perf_counter()
        features = model.encode(batch)
        times["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        (text,) = model.generate(features, combo, decode)
        times["decode"] = time.perf_counter() - start
    return text
