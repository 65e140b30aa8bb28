"""Mouth crops from 68-point face landmarks, with the auto_avsr geometry (pure numpy + OpenCV).

    frames (25 fps RGB)
      -> landmarks        per frame, 68x2 or None, from a landmarker (`face.FaceLandmarker`)   (`mouth_clip`)
      -> fill gaps        linear between detections, copied at the ends   (`interpolate_landmarks`)
      -> smooth           centred mean over +-6 frames, re-anchored to the frame's own centroid (`smooth_landmarks`)
      -> align            LMEDS similarity of the stable points 28,33,36,39,42,45,48,54 onto the mean face (256x256)
      -> crop             96x96 centred on the mean of the aligned mouth points 48..67; a centre more than
                          48 + 5 px from the middle of the 256x256 frame is an error (auto_avsr's OverflowError)

This is the pipeline of auto_avsr's `preparation/` (the crops Llama-AVSR and MoME were trained on), written
so that the known bugs of the public pipelines (auto_avsr's and AV-HuBERT's preparation scripts) cannot happen
here: a failed similarity estimate reuses the nearest good transform instead of crashing the job (auto_avsr),
clips without any face or with fewer than `MIN_FRAMES` frames raise `CropError` with a reason instead of being
dropped silently (auto_avsr) or resized whole (AV-HuBERT), and the bounds check runs before anything is
clamped (AV-HuBERT clamps first, so its check never fires). The warp goes straight to the 96x96 box (the same pixels as warping the
whole 256x256 frame and cutting the box out, about 7x less work).

`mouth_clip` is the one way from a video's frames to its crops: `mome prepare-lrs` / `mome prepare` make the
training data with it, and inference crops a raw clip with it, so a model reads the crops it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from mome.constants import MOUTH_CROP_SIZE

MIN_FRAMES = 12
"""Clips shorter than this are skipped (auto_avsr)."""
SMOOTH_MARGIN = 6
"""Half-width of the centred smoothing window (auto_avsr's `window_margin=12` // 2)."""
STABLE_POINTS = (28, 33, 36, 39, 42, 45, 48, 54)
"""Nose bridge and tip, eye corners, mouth corners: the points aligned onto the mean face."""
MOUTH = slice(48, 68)
REFERENCE_SIZE = 256
CROP_SIZE = MOUTH_CROP_SIZE
MAX_OFFSET = CROP_SIZE // 2 + 5
"""Largest distance (px, per axis) of the aligned mouth centre from the middle of the 256x256 frame."""

# `20words_mean_face.npy` (auto_avsr / Lipreading_using_TCN): x, y of the 68 iBUG points in a 256x256 frame.
# Its 1088 data bytes (`MEAN_FACE.tobytes()`) are those of the released file (sha256 dbf68b20...81422, whose
# header is padded the old way); sha256 of the data: fa55fe4a...c2c10 (checked in tests/lrs/test_mouth_crop.py).
MEAN_FACE = np.array(
    [
        (70.92383848116445, 97.13757949462641),
        (72.62515288351078, 114.90361188285254),  # 0, 1
        (75.98941827444136, 131.07402472829844),
        (79.2695931821559, 146.2116595997759),  # 2, 3
        (83.61348894398981, 163.26020701139876),
        (91.33134185681857, 177.44535288004224),  # 4, 5
        (100.27169244578133, 187.08855670427997),
        (112.12435016388423, 196.00353535226736),  # 6, 7
        (130.7417580075817, 200.5299886205456),
        (149.85530270092573, 195.3119806538203),  # 8, 9
        (163.10168700103682, 186.44060881414399),
        (173.65334171534926, 176.5725015818616),  # 10, 11
        (182.4361445903047, 162.27992571994974),
        (187.16738555724973, 145.09391977605495),  # 12, 13
        (190.22905332928843, 129.72418731003313),
        (193.02118502126157, 113.45923357784717),  # 14, 15
        (194.43863372217956, 95.57953920495954),
        (81.33095966664638, 80.7954451081944),  # 16, 17
        (87.75906555768356, 75.27980275239393),
        (96.22692544456642, 73.83857496648524),  # 18, 19
        (104.55524334700424, 74.74029382053662),
        (112.23186143963814, 76.97670953698955),  # 20, 21
        (144.49576387205596, 76.42387471498733),
        (152.34799900707932, 73.83329748466542),  # 22, 23
        (161.13054078871582, 72.6357038526189),
        (170.5871567415716, 73.84785054186868),  # 24, 25
        (178.21409885404546, 79.4380285679228),
        (128.733742497853, 95.35962565543399),  # 26, 27
        (128.48854473271905, 106.92459505614299),
        (128.24475936187915, 118.27285085803828),  # 28, 29
        (128.2659654694305, 127.69870726985474),
        (118.7600011311932, 135.19357677297927),  # 30, 31
        (122.96307973457223, 136.14619773626936),
        (128.87017960974802, 137.30253355584708),  # 32, 33
        (134.94283139516824, 135.99720543270277),
        (139.48259748050492, 134.87763793235783),  # 34, 35
        (92.52245552947952, 94.36876013925871),
        (97.58518219091603, 90.95977780864015),  # 36, 37
        (105.41368272534791, 90.91345887337647),
        (112.7724172413806, 94.94360869870115),  # 38, 39
        (106.1036350029978, 97.0848569305685),
        (98.0462856522737, 97.36335869283778),  # 40, 41
        (145.52511509158018, 94.5349986248377),
        (152.5895343844843, 90.21485665622998),  # 42, 43
        (160.6117066599242, 90.19938513610091),
        (166.67710071343456, 93.56562295717796),  # 44, 45
        (160.5597157158167, 96.48125957611816),
        (152.2046599320386, 96.47281336075321),  # 46, 47
        (107.16760614090083, 157.19606764242243),
        (114.4761121594912, 152.12006956869445),  # 48, 49
        (123.84852759001141, 148.5186319927202),
        (128.97628287508832, 149.41552526584132),  # 50, 51
        (134.14360702818732, 148.4262821063011),
        (144.17717841903226, 151.7934326195266),  # 52, 53
        (152.19284005377082, 156.98711116207943),
        (143.85966895195557, 164.0034710111701),  # 54, 55
        (136.7441506983738, 167.94300059697187),
        (129.15278277857666, 168.81853365656912),  # 56, 57
        (121.79511073818607, 168.0227192850946),
        (115.27508573225096, 164.1515935501153),  # 58, 59
        (109.23088653400715, 157.0017210276686),
        (122.50270761831963, 154.40733648815748),  # 60, 61
        (129.02862235738357, 154.1210422747831),
        (135.83648069066908, 154.31214997881702),  # 62, 63
        (150.7578280913324, 156.79506003838384),
        (135.66204627207122, 160.62976731508437),  # 64, 65
        (128.95218547222623, 161.28762709004087),
        (122.48775431575005, 160.50878431332862),  # 66, 67
    ],
    dtype=np.float64,
)


class CropError(ValueError):
    """A clip that cannot give a mouth crop; `reason` is one of `REASONS`, the message says more."""

    REASONS = ("no face", "too few faces", "too few frames", "crop out of bounds")

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class MouthCrops:
    crops: np.ndarray
    """uint8 [T, 96, 96, C] (RGB when the input is RGB)."""
    transforms: np.ndarray
    """float64 [T, 2, 3]: maps input pixel coordinates to crop coordinates (x, y)."""
    detected: int
    """Frames whose landmarks came from the detector (the rest were interpolated)."""
    fallback_transforms: int
    """Frames whose similarity estimate failed and reused the nearest good one."""


def interpolate_landmarks(landmarks: list[np.ndarray | None]) -> np.ndarray:
    """Fill frames without landmarks: linear between detections, the nearest detection at the ends.

    Args:
        landmarks: per frame a (68, 2) array or None.

    Returns:
        float64 [T, 68, 2]. Raises `CropError("no face")` when no frame has landmarks.
    """
    valid = [i for i, lm in enumerate(landmarks) if lm is not None]
    if not valid:
        raise CropError("no face", f"no face detected in any of {len(landmarks)} frames")
    t = np.arange(len(landmarks))
    known = np.stack([np.asarray(landmarks[i], dtype=np.float64) for i in valid])  # [V, 68, 2]
    flat = known.reshape(len(valid), -1)
    # np.interp holds the end values constant outside [first, last] detection: the copy at the ends.
    out = np.stack([np.interp(t, valid, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape(len(landmarks), *known.shape[1:])


def smooth_landmarks(landmarks: np.ndarray, margin: int = SMOOTH_MARGIN) -> np.ndarray:
    """Centred moving mean over t +- min(margin, t, T-1-t) frames (the window shrinks symmetrically at the
    ends), then shifted so that each frame keeps its own centroid (auto_avsr's re-anchoring).

    Args:
        landmarks: [T, P, 2].
    """
    n = len(landmarks)
    csum = np.concatenate([np.zeros((1, *landmarks.shape[1:])), np.cumsum(landmarks, axis=0)])  # [T+1, P, 2]
    t = np.arange(n)
    half = np.minimum(np.minimum(margin, t), n - 1 - t)
    smoothed = (csum[t + half + 1] - csum[t - half]) / (2 * half + 1)[:, None, None]
    return smoothed + (landmarks.mean(axis=1, keepdims=True) - smoothed.mean(axis=1, keepdims=True))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """4-DOF similarity (rotation, uniform scale, shift) from `src` to `dst` points ([N, 2]), robust (LMEDS);
    None when OpenCV cannot estimate one (degenerate points)."""
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float64), dst.astype(np.float64), method=cv2.LMEDS)
    if m is None or not np.all(np.isfinite(m)):
        return None
    return m


def _nearest_good(transforms: list[np.ndarray | None]) -> np.ndarray:
    """Per frame, the index of itself or, where the estimate failed, of the nearest frame whose estimate
    succeeded (the earlier one on ties)."""
    good = np.array([i for i, m in enumerate(transforms) if m is not None])
    if not len(good):
        raise CropError("no face", "the landmarks never gave a similarity transform")
    t = np.arange(len(transforms))
    return good[np.argmin(np.abs(good[None, :] - t[:, None]), axis=1)]  # argmin takes the first (earlier)


def crop_mouths(
    frames: np.ndarray,
    landmarks: list[np.ndarray | None],
    *,
    reference: np.ndarray = MEAN_FACE,
    min_frames: int = MIN_FRAMES,
    margin: int = SMOOTH_MARGIN,
    crop_size: int = CROP_SIZE,
    max_offset: float = MAX_OFFSET,
) -> MouthCrops:
    """Mouth crops of a clip from its frames and per-frame landmarks (None where no face was found).

    Args:
        frames: uint8 [T, H, W, C] (or [T, H, W]).
        landmarks: T entries, each (68, 2) in pixel coordinates of `frames` (x, y) or None.

    Raises:
        CropError: "too few frames", "no face" or "crop out of bounds" (with the frame and offset).
    """
    if len(frames) != len(landmarks):
        raise ValueError(f"{len(frames)} frames but {len(landmarks)} landmark entries")
    if len(frames) < min_frames:
        raise CropError("too few frames", f"{len(frames)} frames, at least {min_frames} needed")
    detected = sum(lm is not None for lm in landmarks)
    smoothed = smooth_landmarks(interpolate_landmarks(landmarks), margin)  # [T, 68, 2]
    stable = list(STABLE_POINTS)
    estimates = [similarity(s[stable], reference[stable]) for s in smoothed]
    # A frame whose estimate failed takes its nearest good neighbour's transform and mouth points, so its
    # crop box is the neighbour's (its own points are degenerate).
    source = _nearest_good(estimates)
    fallbacks = int(np.sum(source != np.arange(len(source))))
    aligned = np.stack([estimates[i] for i in source])  # [T, 2, 3]
    # Mouth centre in the aligned 256x256 frame: mean of the mapped smoothed points 48..67.
    mouth = smoothed[source, MOUTH]  # [T, 20, 2]
    centre = (np.einsum("tpj,tij->tpi", mouth, aligned[:, :, :2]) + aligned[:, None, :, 2]).mean(axis=1)  # [T, 2]
    offset = np.abs(centre - REFERENCE_SIZE / 2)
    bad = np.flatnonzero((offset > max_offset).any(axis=1))
    if len(bad):
        t = int(bad[0])
        raise CropError(
            "crop out of bounds",
            f"frame {t}: aligned mouth centre ({centre[t, 0]:.1f}, "
            f"{centre[t, 1]:.1f}) is more than {max_offset} px from the middle of the "
            f"{REFERENCE_SIZE}x{REFERENCE_SIZE} frame ({len(bad)} frames like this)",
        )
    half = crop_size // 2
    # The box's top-left corner in the aligned frame (auto_avsr: round(c - 48)); warping with the corner
    # subtracted from the shift gives the box directly.
    corner = np.round(centre - half)
    transforms = aligned.copy()
    transforms[:, :, 2] -= corner
    crops = np.stack(
        [
            cv2.warpAffine(
                f, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            for f, m in zip(frames, transforms)
        ]
    )
    return MouthCrops(crops, transforms, detected, fallbacks)


def mouth_clip(
    frames: np.ndarray,
    landmarker: Callable[[np.ndarray], np.ndarray | None],
    *,
    min_face_share: float = 0.0,
    **crop_options,
) -> MouthCrops:
    """Mouth crops of 25 fps RGB frames from the landmarks `landmarker` finds on each (see the module docstring).

    Args:
        landmarker: frame -> (68, 2) landmarks or None (a `face.FaceLandmarker`).
        min_face_share: refuse a clip whose face is found on fewer than this share of its frames (its crops
            would be interpolated over most of it); 0 (preparation) crops any clip with one face.
        crop_options: passed on to `crop_mouths`.

    Raises:
        CropError: "too few faces" (before any crop), else as `crop_mouths`.
    """
    landmarks = [landmarker(f) for f in frames]
    found = sum(lm is not None for lm in landmarks)
    if found < min_face_share * len(landmarks):
        raise CropError("too few faces", f"a face is found on only {found} of {len(landmarks)} frames")
    return crop_mouths(frames, landmarks, **crop_options)


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points [N, 2] (x, y) through a 2x3 affine transform."""
    return points @ m[:, :2].T + m[:, 2]
