"""Audio and video transforms of auto_avsr (as reused by the Llama-AVSR code), on numpy input, returning torch tensors.

    video train: x/255 -> random crop 88 -> grayscale -> time mask (<10 frames per 25; `data.time_mask`) -> normalise
    video eval:  x/255 -> centre crop 88 -> grayscale -> normalise
    audio train: time mask (<0.4 s per second; `data.time_mask`) -> babble at a random SNR (or clean) -> per-utterance norm
    audio eval:  babble at a fixed SNR with a seeded generator (optional) -> per-utterance norm

The time masks zero the signal before normalisation, as in the reference. Randomness comes from the
generator passed in, so callers decide what is reproducible. Every reader applies them through
`mome.data.utterance.InputChain`, which also aligns the audio to the video.
"""

from __future__ import annotations

import numpy as np
import torch

from mome.constants import FPS, MODEL_CROP_SIZE, SAMPLE_RATE
from mome.data.noise import Babble

VIDEO_MEAN, VIDEO_STD = 0.421, 0.165  # LRS3 grayscale statistics (auto_avsr)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # torchvision Grayscale weights


def time_mask(x: np.ndarray, window: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """auto_avsr `AdaptiveTimeMask`: floor((T + stride - 0.1) / stride) masks of length U[0, window),
    set to zero, along axis 0."""
    x = x.copy()
    length = x.shape[0]
    for _ in range(int((length + stride - 0.1) // stride)):
        width = int(rng.integers(0, window))
        if width == 0 or length - width <= 0:
            continue
        start = int(rng.integers(0, length - width))
        x[start : start + width] = 0
    return x


def mask_per_second(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """auto_avsr's masks at `rate` frames (or samples) per second: each second, up to 0.4 s zeroed."""
    return time_mask(x, window=rate * 2 // 5, stride=rate, rng=rng)


def video_transform(
    frames: np.ndarray, train: bool, rng: np.random.Generator, crop: int = MODEL_CROP_SIZE, mask: bool = True
) -> torch.Tensor:
    """uint8 RGB [T, H, W, 3] -> normalised grayscale float32 [T, 1, crop, crop]; `mask`: time masks in training."""
    t, h, w, _ = frames.shape
    if h < crop or w < crop:
        raise ValueError(f"frames are {h}x{w}, smaller than the {crop} crop")
    if train:
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    else:
        top, left = (h - crop) // 2, (w - crop) // 2
    x = frames[:, top : top + crop, left : left + crop].astype(np.float32) / 255.0 @ _GRAY  # [T, crop, crop]
    if train and mask:
        x = mask_per_second(x, FPS, rng)  # < 0.4 s (10 frames) per second
    x = (x - VIDEO_MEAN) / VIDEO_STD
    return torch.from_numpy(np.ascontiguousarray(x[:, None], dtype=np.float32))


def audio_transform(
    audio: np.ndarray,
    train: bool,
    rng: np.random.Generator,
    babble: Babble | None = None,
    snr: float | None = None,
    mask: bool = True,
) -> torch.Tensor:
    """float32 [S] at 16 kHz -> [S]: (train, `mask`) time mask, babble at `snr` (None = clean), layer norm."""
    x = audio.astype(np.float32)
    if train and mask:
        x = mask_per_second(x, SAMPLE_RATE, rng)
    if babble is not None and snr is not None:
        x = babble.add(x, snr, rng)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-8)  # per-utterance layer norm, eps 1e-8 (reference)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
