"""One clip -> model inputs and the rates to decode them at: what `mome.inference.api` (and `mome transcribe`) reads.

The clip is either a prepared mouth crop (96x96, 25 fps: what `mome synth` and `mome prepare-lrs` write) or
a raw video of a person speaking. `input_kind="auto"` treats exactly-96x96 frames as a mouth crop and
anything else as raw; "crop" / "raw" force one. Every video is resampled to 25 fps by timestamp (a 50 fps
or variable-rate mouth crop keeps its duration); a clip over `MAX_CLIP_SECONDS` (30 s), audio or video, is
refused in one line (`ClipTooLong`). A raw video goes
through the preparation pipeline (dlib face + 68 landmarks, smoothing, alignment to the mean face, 96x96
mouth crop: `mome.lrs.mouth_crop.mouth_clip`, the function that crops the training data). Then the clip
becomes model inputs exactly like an evaluation utterance (`mome.data.utterance.InputChain`: centre crop,
grayscale, normalisation; audio at 16 kHz, per-utterance norm, no noise). Audio comes from a separate file, or else from the video's own audio track
(resampled to 16 kHz mono). Audio and video lengths that disagree by more than `data.av_tolerance_frames`
are refused, as the dataset refuses such an utterance. A modality the clip lacks (no face, no or silent
audio: `mome.inference.clip`) stops a task-specific model with one line; a unified model uses the other. Encoding and
generation run under the autocast of `decode.precision` (`auto`: bf16 where the device has native bf16
matmul, else fp32; `mome.precision`).

    clip = load_clip(Path("clip.mp4"), None, cfg.model.compression.task, cfg.data.crop_size)
    combo = combination_for(cfg.model.compression, clip.modalities, None)   # then `mome.inference.api` decodes it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mome.config import combination_task, task_modalities
from mome.constants import FPS, MAX_CLIP_SECONDS, MODEL_CROP_SIZE, SAMPLE_RATE
from mome.data.collate import collate
from mome.data.media import MediaError
from mome.data.utterance import InputChain, Utterance
from mome.errors import ClipTooLong, UserError
from mome.inference.clip import ClipMedia, choose_modalities, read_clip

if TYPE_CHECKING:
    from mome.config import Combination, CompressionConfig

INPUT_KINDS = ("auto", "crop", "raw")


def _check_duration(where: str, media: ClipMedia, used: tuple[str, ...]) -> None:
    """One rule for every modality: a clip longer than `MAX_CLIP_SECONDS` is refused (`ClipTooLong`)."""
    seconds = max(
        len(media.frames) / FPS if "video" in used else 0.0,
        len(media.samples) / SAMPLE_RATE if "audio" in used else 0.0,
    )
    if seconds > MAX_CLIP_SECONDS:
        raise ClipTooLong(seconds, MAX_CLIP_SECONDS, where)


@dataclass
class Clip:
    """One clip as a model's input: a collated batch of size 1 and the modalities in it."""

    batch: dict
    modalities: tuple[str, ...]
    """The modalities the model will use (a unified model: those the clip has)."""
    problems: dict[str, str]
    """What was wrong with each modality left out (`mome.inference.clip`)."""


def load_clip(
    video: Path | None,
    audio: Path | None,
    task: str,
    crop: int = MODEL_CROP_SIZE,
    input_kind: str = "auto",
    times: dict | None = None,
    tolerance: int | None = None,
) -> Clip:
    """One clip with the model inputs of an evaluation utterance, for a model of `task` (`asr`, `vsr`, `avsr`
    or `any`); a clip the model cannot use raises `MediaError` naming the problem (`mome.inference.clip`).

    Args:
        audio: a 16 kHz wav; None = the audio track of `video`.
        input_kind: "crop" (a prepared mouth crop), "raw" (face detection and mouth crop first) or "auto"
            (raw unless the frames are exactly 96x96).
        times: receives the time of the "face" stage for raw videos.
        tolerance: largest accepted |audio frames - video frames| (`data.av_tolerance_frames`); beyond it a
            `MediaError`, as the dataset refuses such an utterance. None: no check.
    """
    if input_kind not in INPUT_KINDS:
        raise UserError(f"input_kind {input_kind!r}: expected one of {', '.join(INPUT_KINDS)}")
    media = read_clip(video, audio, task_modalities(task), input_kind, times)
    used = choose_modalities(task, media, str(video or audio))
    utterance = _utterance(media, used, audio or video)  # type: ignore[arg-type]
    known = media.frames is not None or (media.video_frames and "video" not in media.problems)
    chain = InputChain(crop, tolerance=tolerance if known else None)  # audio alone has no video to match
    chain.check(utterance)
    _check_duration(str(video or audio), media, used)
    try:
        inputs, _ = chain.inputs(utterance)
    except ValueError as err:  # frames smaller than the crop
        raise MediaError(video or audio, str(err)) from None
    name = (video or audio).stem  # type: ignore[union-attr]
    return Clip(collate([{"id": name, "text": "", **inputs}]), used, media.problems)


def _utterance(media: ClipMedia, used: tuple[str, ...], path: Path) -> Utterance:
    """The streams of a clip the model will use, aligned as a corpus utterance's (the audio to the video)."""
    frames = media.frames if "video" in used else None
    samples = media.samples if "audio" in used else None
    return Utterance(frames, samples, media.num_frames(), path)


def combination_for(comp: CompressionConfig, modalities: tuple[str, ...], requested: Combination | None) -> Combination:
    """The rate combination for the modalities a clip gives: `requested` (default: the finest). A unified
    model drops the rate of a modality the clip lacks ((16, 5) -> (16, -) for a clip without video) and keeps
    a single-modality request as it is; if nothing is left, the finest rate of what the clip has."""
    audio, video = requested or finest_combination(comp)
    if comp.task != "any":
        return audio, video
    audio = audio if "audio" in modalities else None
    video = video if "video" in modalities else None
    if audio is None and video is None:
        audio = min(comp.audio_rates) if "audio" in modalities else None
        video = min(comp.video_rates) if "video" in modalities else None
    return audio, video


def uses(combo: Combination) -> tuple[str, ...]:
    """The modalities a rate combination reads."""
    return task_modalities(combination_task(combo))


def finest_combination(comp: CompressionConfig) -> Combination:
    """The smallest trained rates (most tokens, usually the lowest WER): the default combination."""
    return (min(comp.audio_rates) if comp.uses_audio else None, min(comp.video_rates) if comp.uses_video else None)


def clip_seconds(batch: dict) -> float:
    """Duration of a loaded clip, from its video frames (or its audio samples for an audio-only model)."""
    return len(batch["video"][0]) / FPS if "video" in batch else len(batch["audio"][0]) / SAMPLE_RATE
