"""What one clip gives a model: its mouth crops and its audio, each checked, and the modalities to use.

A clip may lack a usable modality: a raw video in which the face is found on too few frames, a video stream
that is absent or too short to read lips from, an audio track that is absent or silent. A unified model
(`task: any`) then falls back to the modality that is there; a task-specific model stops with one line
that names the problem. Either way the caller learns which modalities were used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mome.config import task_modalities
from mome.constants import MOUTH_CROP_SIZE, SAMPLES_PER_FRAME
from mome.data.media import MediaError, read_audio, read_audio_track, read_media
from mome.lrs.face import FaceLandmarker
from mome.lrs.mouth_crop import MIN_FRAMES, CropError, mouth_clip

MIN_FACE_SHARE = 0.5
"""A raw video whose face is found on fewer of its frames than this is not lip-readable (the mouth crops
would be interpolated over most of the clip)."""
SILENCE_DBFS = -60.0
"""An audio track whose RMS level is below this (dB relative to full scale) is silent: a muted or empty track."""


@dataclass
class ClipMedia:
    """A clip's usable streams and, for each unusable one, why."""

    frames: np.ndarray | None = None
    """uint8 mouth crops [T, 96, 96, 3] at 25 fps."""
    samples: np.ndarray | None = None
    """float32 mono audio [S] at 16 kHz."""
    problems: dict[str, str] = field(default_factory=dict)
    """modality -> what is wrong with it (absent, silent, no face ...)."""
    video_frames: int | None = None
    """Frames of the video file at 25 fps, when it decodes (usable for lip reading or not)."""

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(m for m, x in (("audio", self.samples), ("video", self.frames)) if x is not None)

    def num_frames(self) -> int:
        """The clip's length in video frames: the mouth crops', else a sound video file's (as the dataset
        takes an audio-only item's length from its video), else the audio's own in 25 fps frames."""
        if self.frames is not None:
            return len(self.frames)
        if self.video_frames is not None and "video" not in self.problems:
            return self.video_frames
        assert self.samples is not None, "a clip without audio or video has no length"
        return int(np.ceil(len(self.samples) / SAMPLES_PER_FRAME))


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to a full-scale signal (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def _frames(video: Path, input_kind: str) -> tuple[np.ndarray, bool]:
    """(frames at 25 fps, whether they are a raw video rather than 96x96 mouth crops). Mouth crops too are
    retimed by timestamp (`read_media`): a 50 fps or variable-rate crop keeps its duration."""
    frames, _ = read_media(video, need_audio=False)
    raw = input_kind == "raw" or (input_kind == "auto" and frames.shape[1:3] != (MOUTH_CROP_SIZE, MOUTH_CROP_SIZE))
    return frames, raw


def _mouth_crops(frames: np.ndarray, times: dict) -> tuple[np.ndarray | None, str | None]:
    """A raw video's mouth crops, made as the training data's (`mouth_clip`), or (None, what is wrong): too
    few frames with a face, a crop that fails."""
    start = time.perf_counter()
    try:
        return mouth_clip(frames, FaceLandmarker(), min_face_share=MIN_FACE_SHARE).crops, None
    except CropError as err:
        return None, err.detail if err.reason == "too few faces" else f"cannot crop the mouth: {err}"
    finally:
        times["face"] = time.perf_counter() - start


def _audio(video: Path | None, audio: Path | None) -> tuple[np.ndarray | None, str | None]:
    """(samples, None) or (None, what is wrong with the audio). A file given as `audio` must be readable."""
    if audio is not None:
        samples = read_audio(audio)
    elif video is None:
        return None, "no audio given"
    else:
        try:
            samples = read_audio_track(video)
        except MediaError as err:
            if err.reason != "no audio track":
                return None, err.reason
            return None, "no audio track (give the audio with --audio FILE.wav)"
    level = rms_dbfs(samples)
    if level < SILENCE_DBFS:
        return None, f"the audio is silent (RMS {level:.0f} dBFS, below {SILENCE_DBFS:.0f})"
    return samples, None


def read_clip(
    video: Path | None, audio: Path | None, wanted: tuple[str, ...], input_kind: str = "auto", times: dict | None = None
) -> ClipMedia:
    """The streams of a clip that `wanted` asks for, each read and checked; never raises for a stream that
    is merely absent, silent or faceless (see `problems`), only for a file that cannot be read at all."""
    media = ClipMedia()
    if video is not None:
        try:
            frames, raw = _frames(video, input_kind)
            media.video_frames = len(frames)
            if "video" in wanted:
                problem = None
                if raw:
                    frames, problem = _mouth_crops(frames, {} if times is None else times)
                if frames is not None and len(frames) < MIN_FRAMES:
                    problem = f"the video is {len(frames)} frames long, too short to read lips (at least {MIN_FRAMES})"
                if problem:
                    media.problems["video"] = problem
                else:
                    media.frames = frames
        except MediaError as err:
            if err.reason != "no video stream":  # a missing, empty or undecodable file: the user's mistake
                raise
            media.problems["video"] = err.reason
    elif "video" in wanted:
        media.problems["video"] = "no video given"
    if "audio" in wanted:
        media.samples, problem = _audio(video, audio)
        if problem:
            media.problems["audio"] = problem
    return media


def choose_modalities(task: str, media: ClipMedia, where: str) -> tuple[str, ...]:
    """The modalities the model will use: all its task needs, or (a unified model) the ones the clip has.

    Raises `MediaError` naming what is wrong when the model cannot work with what the clip has."""
    needed = task_modalities(task)
    usable = tuple(m for m in needed if m in media.available)
    missing = [m for m in needed if m not in usable]
    if task == "any" and usable:
        return usable
    if not missing:
        return usable
    problems = "; ".join(f"{m}: {media.problems.get(m, 'absent')}" for m in missing)
    hint = (
        ""
        if task == "any"
        else (
            f" (this {task.upper()} model needs {' and '.join(needed)}; a unified "
            "`task: any` model falls back to the modality that is there)"
        )
    )
    raise MediaError(where, problems + hint)
