"""Gap filling, smoothing, alignment to the mean face and the 96x96 crop (`mome.lrs.mouth_crop`)."""

import hashlib

import cv2
import numpy as np
import pytest

from mome.lrs.mouth_crop import (
    MEAN_FACE,
    CropError,
    apply_transform,
    crop_mouths,
    interpolate_landmarks,
    smooth_landmarks,
)


def _similar(points, scale=1.0, angle=0.0, shift=(0.0, 0.0)):
    c, s = np.cos(np.radians(angle)) * scale, np.sin(np.radians(angle)) * scale
    return points @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def test_mean_face_is_the_released_file():
    assert MEAN_FACE.shape == (68, 2) and MEAN_FACE.dtype == np.float64
    assert hashlib.sha256(MEAN_FACE.tobytes()).hexdigest().startswith("fa55fe4a")
    np.testing.assert_allclose(MEAN_FACE[48:68].mean(axis=0), (129.313, 157.823), atol=1e-3)
    # The released .npy file, rebuilt: an 80-byte version-1.0 header (the old 16-byte padding) + these data bytes.
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (68, 2), }".ljust(69) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + MEAN_FACE.tobytes()
    assert len(raw) == 80 + 1088 and hashlib.sha256(raw).hexdigest().startswith("dbf68b20")


def test_interpolation_is_linear_and_copies_the_ends():
    a, b = np.zeros((68, 2)), np.full((68, 2), 10.0)
    out = interpolate_landmarks([None, a, None, None, None, b, None])
    assert out.shape == (7, 68, 2)
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 2.5, 5, 7.5, 10, 10])
    with pytest.raises(CropError) as err:
        interpolate_landmarks([None, None])
    assert err.value.reason == "no face"


def test_smoothing_window_is_centred_and_shrinks_at_the_ends():
    rng = np.random.default_rng(0)
    lm = rng.normal(size=(20, 68, 2))
    out = smooth_landmarks(lm, margin=6)
    for t in (0, 3, 10, 19):
        half = min(6, t, 19 - t)
        expected = lm[t - half : t + half + 1].mean(axis=0)
        expected += lm[t].mean(axis=0) - expected.mean(axis=0)  # re-anchored to the frame's own centroid
        np.testing.assert_allclose(out[t], expected, atol=1e-12)
    np.testing.assert_allclose(out[0], lm[0])  # window of one frame at the ends
    # Uniform motion is left unchanged (the centred window does not lag).
    moving = MEAN_FACE[None] + np.arange(20)[:, None, None] * np.array([1.5, -0.5])
    np.testing.assert_allclose(smooth_landmarks(moving), moving, atol=1e-9)


def test_face_similar_to_the_mean_face_is_cropped_at_its_mouth():
    frames = np.random.default_rng(1).integers(0, 255, (15, 300, 320, 3), dtype=np.uint8)
    lm = [_similar(MEAN_FACE, 0.8, 10.0, (40.0 + t, 30.0)) for t in range(15)]
    result = crop_mouths(frames, lm)
    assert result.crops.shape == (15, 96, 96, 3) and result.crops.dtype == np.uint8
    assert result.detected == 15 and result.fallback_transforms == 0
    for t in (0, 7, 14):
        centre = apply_transform(result.transforms[t], lm[t][48:68]).mean(axis=0)
        expected = MEAN_FACE[48:68].mean(axis=0) - (81, 110)  # the box corner is round(centre - 48)
        np.testing.assert_allclose(centre, expected, atol=1e-6)


def test_direct_warp_equals_warp_then_cut():
    """The crop is warped straight into the 96x96 box; the pixels equal auto_avsr's 256x256 warp + cut."""
    frame = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 255, (240, 260, 3), dtype=np.uint8), (5, 5), 2)
    lm = [_similar(MEAN_FACE, 0.9, -7.0, (12.3, 8.9))] * 12
    result = crop_mouths(np.stack([frame] * 12), lm)
    m, _ = cv2.estimateAffinePartial2D(
        lm[0][[28, 33, 36, 39, 42, 45, 48, 54]], MEAN_FACE[[28, 33, 36, 39, 42, 45, 48, 54]], method=cv2.LMEDS
    )
    full = cv2.warpAffine(frame, m, (256, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cx, cy = apply_transform(m, lm[0][48:68]).mean(axis=0)
    y0, x0 = round(cy - 48), round(cx - 48)
    diff = np.abs(full[y0 : y0 + 96, x0 : x0 + 96].astype(int) - result.crops[0].astype(int))
    assert diff.max() <= 1, diff.max()


def test_errors_have_reasons():
    frames = np.zeros((12, 200, 200, 3), np.uint8)
    with pytest.raises(CropError, match="too few frames"):
        crop_mouths(frames[:11], [MEAN_FACE] * 11)
    with pytest.raises(CropError, match="no face"):
        crop_mouths(frames, [None] * 12)
    # Mouth 60 px below where the stable points put it: the robust fit follows the 6 other stable points.
    far = MEAN_FACE.copy()
    far[48:68, 1] += 60
    with pytest.raises(CropError) as err:
        crop_mouths(frames, [far] * 12)
    assert err.value.reason == "crop out of bounds" and "frame 0" in str(err.value)


def test_failed_similarity_reuses_the_nearest_good_transform():
    """auto_avsr crashes in cv2.warpAffine when LMEDS returns None (5.2.4); here the frame reuses a neighbour's."""
    frames = np.zeros((12, 200, 200, 3), np.uint8)
    lm = [MEAN_FACE.copy() for _ in range(12)]
    lm[5] = np.full((68, 2), 100.0)  # all points equal: no similarity exists
    result = crop_mouths(frames, lm, margin=0)
    assert result.fallback_transforms == 1
    np.testing.assert_allclose(result.transforms[5], result.transforms[4])
