"""Synthetic talking faces for the preparation tests (importable as `faces`, like `tiny`): a real photograph of
a face (scikit-image's astronaut) moved and scaled from frame to frame, with a modulated tone as its voice."""

from __future__ import annotations

import cv2
import numpy as np

from mome.data.media import write_video

FACE_CENTRE = (220.0, 125.0)  # of the astronaut's face in the 512x512 photograph
SIZE = 224  # LRS3 frames are 224x224


def frame_transform(t: int, n: int) -> np.ndarray:
    """Photograph -> frame t of n: scale 0.88-1.12 and a shift of up to 14 px, moving smoothly."""
    phase = 2 * np.pi * t / max(n, 1)
    s, dx, dy = 1.0 + 0.12 * np.sin(phase), 14 * np.sin(1.3 * phase), 10 * np.cos(phase)
    return np.array([[s, 0, SIZE / 2 + dx - s * FACE_CENTRE[0]], [0, s, SIZE / 2 + dy - s * FACE_CENTRE[1]]])


def astronaut_frames(n: int) -> np.ndarray:
    """n RGB frames [n, SIZE, SIZE, 3] of the moving photograph (needs scikit-image: importorskip it first)."""
    from skimage import data

    img = data.astronaut()
    return np.stack(
        [
            cv2.warpAffine(
                img, frame_transform(t, n), (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            for t in range(n)
        ]
    )


def faceless_frames(n: int, size: int = SIZE) -> np.ndarray:
    """n frames of a flat grey that brightens: a video without a face."""
    return np.stack([np.full((size, size, 3), 90 + t % 100, np.uint8) for t in range(n)])


def tone(seconds: float) -> np.ndarray:
    """16 kHz audio: a 220 Hz tone modulated at 3 Hz, like a voice's syllables."""
    t = np.arange(int(seconds * 16000)) / 16000
    return 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))


def write_av(path, frames, audio, fps=25):
    """mp4 with H.264 video and, unless `audio` is None, a 16 kHz mono AAC track, like the LRS release."""
    write_video(path, frames, fps=fps, audio=audio)
