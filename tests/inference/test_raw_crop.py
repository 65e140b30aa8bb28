"""A raw video is cropped at inference as `mome prepare` crops the videos a model is trained on: the same
landmarks, smoothing, alignment and 96x96 box, so the same pixels. What inference adds is a refusal: a clip
whose face is found on fewer than half of its frames is not lip-readable (the crop would be interpolated over
most of it), where preparation interpolates from any frame with a face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faces import astronaut_frames, faceless_frames
from mome.data.media import read_media, write_video
from mome.inference.clip import read_clip
from mome.lrs.face import FaceLandmarker
from mome.lrs.mouth_crop import CropError, mouth_clip

pytest.importorskip("skimage.data")
N = 30


def _raw_video(path: Path, with_face: int, n: int = N) -> Path:
    """A 224x224 (raw, not a mouth crop) video whose first `with_face` frames show a face, the rest a wall."""
    frames = astronaut_frames(n)
    if with_face < n:
        frames[with_face:] = faceless_frames(n - with_face)
    write_video(path, frames)
    return path


def _training_crops(path: Path) -> np.ndarray:
    """The crops the preparation of training data makes of the same decoded frames."""
    frames, _ = read_media(path, need_audio=False)
    return mouth_clip(frames, FaceLandmarker()).crops


@pytest.mark.parametrize("with_face", [N, 18])
def test_a_raw_clip_gets_the_crops_training_data_got(tmp_path, with_face) -> None:
    video = _raw_video(tmp_path / "raw.mp4", with_face)
    media = read_clip(video, None, ("video",))
    assert media.problems == {}
    assert media.frames.shape == (N, 96, 96, 3)
    np.testing.assert_array_equal(media.frames, _training_crops(video))


def test_a_face_on_fewer_than_half_of_the_frames_is_refused_at_inference_only(tmp_path) -> None:
    video = _raw_video(tmp_path / "raw.mp4", 12)
    media = read_clip(video, None, ("video",))
    assert media.frames is None and media.problems == {"video": "a face is found on only 12 of 30 frames"}
    frames, _ = read_media(video, need_audio=False)
    assert mouth_clip(frames, FaceLandmarker()).detected == 12  # preparation interpolates the rest


def test_no_face_and_too_few_frames(tmp_path) -> None:
    video = _raw_video(tmp_path / "wall.mp4", 0)
    assert read_clip(video, None, ("video",)).problems == {"video": "a face is found on only 0 of 30 frames"}
    frames, _ = read_media(video, need_audio=False)
    with pytest.raises(CropError, match="no face: no face detected in any of 30 frames"):
        mouth_clip(frames, FaceLandmarker())
    short = _raw_video(tmp_path / "short.mp4", 8, n=8)
    problem = "cannot crop the mouth: too few frames: 8 frames, at least 12 needed"
    assert read_clip(short, None, ("video",)).problems == {"video": problem}
    short_wall = _raw_video(tmp_path / "short_wall.mp4", 0, n=8)  # the face check comes first
    assert read_clip(short_wall, None, ("video",)).problems == {"video": "a face is found on only 0 of 8 frames"}
