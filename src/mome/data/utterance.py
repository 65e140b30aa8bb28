"""One utterance -> model inputs: decode, check, transform. `AVDataset`, the feature cache and `mome transcribe`
(`mome.inference.inputs`) all go through `InputChain`, so an utterance gives its encoders the same tensors
whichever of them reads it (tests/data/test_utterance.py).

    decode     a corpus utterance's .mp4 and .wav (`InputChain.read`), or a clip (`mome.inference.clip.read_clip`)
    check      audio and video lengths agree within `data.av_tolerance_frames` (`InputChain.check`)
    transform  video: crop, grayscale, (train) time mask, normalise; audio: cut or padded to the video,
               (train) time mask, babble at an SNR (the noise hook), per-utterance norm (`InputChain.inputs`)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mome.config import DataConfig
from mome.constants import MODEL_CROP_SIZE, SAMPLES_PER_FRAME
from mome.data.labels import media_path
from mome.data.media import MediaError, cut_or_pad, read_audio, read_video
from mome.data.noise import Babble
from mome.data.transforms import audio_transform, video_transform


@dataclass(frozen=True)
class Utterance:
    """One utterance's decoded streams, before any transform; a stream is None when it is not read."""

    frames: np.ndarray | None
    """uint8 RGB [T, H, W, 3] at 25 fps."""
    samples: np.ndarray | None
    """float32 mono [S] at 16 kHz."""
    num_frames: int
    """The video frames the audio is cut or padded to: the video's own, else the label's (audio-only)."""
    path: Path
    """The file named in its errors: the audio's when it has audio (lengths that disagree)."""


def check_lengths(path: Path, samples: int, frames: int, tolerance: int | None) -> None:
    """The model sees audio cut or padded to the video's length: refuse to drop seconds of speech silently
    (the utterance is broken). None: no check."""
    audio_frames = samples / SAMPLES_PER_FRAME
    if tolerance is not None and abs(audio_frames - frames) > tolerance:
        raise MediaError(
            path,
            f"audio is {audio_frames:.1f} frames long, video {frames} frames (tolerance {tolerance}; "
            "data.av_tolerance_frames=N accepts more)",
        )


@dataclass(frozen=True)
class InputChain:
    """The data options that shape an utterance's model inputs, and the three steps that apply them."""

    crop: int = MODEL_CROP_SIZE
    """Side of the square video crop (`data.crop_size`)."""
    time_mask: bool = True
    """Time masks in training (`data.time_mask`)."""
    tolerance: int | None = None
    """Largest |audio frames - video frames| (`data.av_tolerance_frames`); None: no check."""

    @classmethod
    def from_config(cls, data: DataConfig, check: bool = True) -> InputChain:
        """The chain of a config; `check=False` leaves the lengths unchecked (audio with no video to match)."""
        return cls(data.crop_size, data.time_mask, data.av_tolerance_frames if check else None)

    def read(self, root: Path, rel_path: str, modalities: Sequence[str], num_frames: int) -> Utterance:
        """Decode the streams `modalities` of a corpus utterance (`<root>/<rel_path>.{mp4,wav}`) and check
        their lengths; `num_frames` is the length of an utterance read without its video (the label's)."""
        frames, samples, path = None, None, media_path(root, rel_path, ".mp4")
        if "video" in modalities:
            frames = read_video(path)
            num_frames = len(frames)
        if "audio" in modalities:
            path = media_path(root, rel_path, ".wav")
            samples = read_audio(path)
        utterance = Utterance(frames, samples, num_frames, path)
        self.check(utterance)
        return utterance

    def check(self, utterance: Utterance) -> None:
        """Refuse audio whose length disagrees with the video's (`MediaError`), once for every reader."""
        if utterance.samples is not None:
            check_lengths(utterance.path, len(utterance.samples), utterance.num_frames, self.tolerance)

    def inputs(
        self,
        utterance: Utterance,
        train: bool = False,
        rng: np.random.Generator | None = None,
        babble: Babble | None = None,
        snrs: Sequence[float | None] = (None,),
    ) -> tuple[dict[str, torch.Tensor], float | None]:
        """The model inputs ("video" [T, 1, crop, crop], "audio" [SAMPLES_PER_FRAME * num_frames]) and the SNR
        used. The noise hook: the babble SNR is drawn from `snrs` in training (after the video's augmentation,
        with the same `rng`; empty = clean) and is `snrs[0]` otherwise. Evaluation takes no randomness but
        the seeded babble segment, so `rng` defaults to a fixed one."""
        rng = np.random.default_rng(0) if rng is None else rng
        inputs: dict[str, torch.Tensor] = {}
        if utterance.frames is not None:
            inputs["video"] = video_transform(utterance.frames, train, rng, self.crop, self.time_mask)
        snr = None
        if utterance.samples is not None:
            if train:
                snr = snrs[int(rng.integers(len(snrs)))] if snrs else None
            else:
                snr = snrs[0] if snrs else None
            audio = cut_or_pad(utterance.samples, SAMPLES_PER_FRAME * utterance.num_frames)
            inputs["audio"] = audio_transform(audio, train, rng, babble, snr, self.time_mask)
        return inputs, snr
