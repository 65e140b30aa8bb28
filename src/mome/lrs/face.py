"""Face detection and 68-point landmarks with dlib (HOG detector + the iBUG 300-W shape predictor).

The model files come from the `face-recognition-models` wheel. That package is located, never imported:
its `__init__` needs `pkg_resources`, which recent setuptools no longer ship. dlib's 68 points use the
same indexing as FAN and as auto_avsr's mean face (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes,
48-67 lips), so `mouth_crop` works on them unchanged.

Choices: the detector runs on grayscale without
upsampling and retries once with one upsampling step when it finds nothing (faces under ~80 px); of
several faces the **largest** is kept (AV-HuBERT keeps the last one); frames wider than `detect_size` are
detected on a downscaled copy and the landmarks are fitted on the full-resolution frame. The CNN (mmod)
detector is opt-in: it finds more faces but is far slower on a CPU (docs/experiments.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from mome.errors import UserError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"


def model_dir() -> Path:
    """The `models/` folder of the installed face-recognition-models package (UserError if absent)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face detection needs the dlib model files: pip install dlib-bin face-recognition-models")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (folder / PREDICTOR_FILE).is_file():
        raise UserError(f"{folder / PREDICTOR_FILE}: missing; reinstall face-recognition-models")
    return folder


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("face detection needs dlib: pip install dlib-bin face-recognition-models") from None
    return dlib


class FaceLandmarker:
    """`landmarker(frame_rgb) -> float64 [68, 2] (x, y) or None`, for the largest face in the frame.

    Args:
        detect_size: frames whose longer side exceeds this are downscaled to it for detection only.
        upsample_retry: retry with one upsampling step when the first pass finds no face.
        cnn_fallback: then also try dlib's CNN detector (far slower on a CPU; docs/experiments.md).
    """

    def __init__(self, detect_size: int = 640, upsample_retry: bool = True, cnn_fallback: bool = False) -> None:
        dlib = _import_dlib()
        folder = model_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        self.cnn = dlib.cnn_face_detection_model_v1(str(folder / CNN_DETECTOR_FILE)) if cnn_fallback else None
        self.detect_size, self.upsample_retry = detect_size, upsample_retry

    def detect(self, gray: np.ndarray) -> tuple[float, float, float, float] | None:
        """The largest face box (left, top, right, bottom) in pixels of `gray`, or None."""
        scale = min(1.0, self.detect_size / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        boxes = list(self.detector(small, 0))
        if not boxes and self.upsample_retry:
            boxes = list(self.detector(small, 1))
        if not boxes and self.cnn is not None:
            boxes = [d.rect for d in self.cnn(small, 0)]
        if not boxes:
            return None
        best = max(boxes, key=lambda r: r.width() + r.height())  # largest, as auto_avsr
        return tuple(v / scale for v in (best.left(), best.top(), best.right(), best.bottom()))

    def landmarks(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        rect = self._dlib.rectangle(*(round(v) for v in box))
        shape = self.predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        box = self.detect(gray)
        return None if box is None else self.landmarks(gray, box)
