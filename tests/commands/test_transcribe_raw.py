"""`mome transcribe` on a raw video: a moving photograph of a face (scikit-image's astronaut) with flite
speech as the mp4's own audio track, through face detection, mouth crop, encoders and decoding.

The checkpoint is the untrained `tiny` preset (as in test_eval_transcribe.py), so the words are garbage;
the test checks that the raw path runs end to end and reports its stages."""

import shutil
import subprocess
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from mome.cli import main
from mome.config import load_config
from mome.data.media import write_video
from mome.models.avsr import build_model
from mome.runs.checkpoint import save_checkpoint

skimage_data = pytest.importorskip("skimage.data")
FAST = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]


def astronaut_frames(n: int, size: int = 320) -> np.ndarray:
    """The photograph's face moving and scaling smoothly in a 320x320 frame (not a 96x96 mouth crop)."""
    img, out = skimage_data.astronaut(), []
    for t in range(n):
        phase = 2 * np.pi * t / n
        s, dx, dy = 1.3 + 0.15 * np.sin(phase), 20 * np.sin(1.3 * phase), 12 * np.cos(phase)
        m = np.array([[s, 0, size / 2 + dx - s * 220.0], [0, s, size / 2 + dy - s * 125.0]])
        out.append(cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


@pytest.fixture(scope="module")
def raw_clip(tmp_path_factory):
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    folder = tmp_path_factory.mktemp("raw")
    wav = folder / "speech.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", "place the red block on the table", "-o", str(wav)], check=True)
    speech, rate = sf.read(str(wav), dtype="float32")
    assert rate == 16000
    frames = astronaut_frames(int(np.ceil(len(speech) / rate * 30)))  # a 30 fps camera
    path = folder / "speaker.mp4"
    write_video(path, frames, fps=30, audio=speech)
    return path, len(speech) / rate


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = load_config("tiny")
    torch.manual_seed(cfg.train.seed)
    folder = tmp_path_factory.mktemp("run")
    save_checkpoint(folder / "checkpoints", 0, build_model(cfg.model).trainable_state_dict(), cfg, {})
    return folder


def test_transcribe_raw_video_end_to_end(raw_clip, run_dir, capsys):
    path, seconds = raw_clip
    assert main(["transcribe", str(run_dir), "--video", str(path), *FAST]) == 0  # --input auto: raw (320x320)
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # the text (garbage words from an untrained model)
    assert all(f"{stage} " in err for stage in ("load", "read", "face", "encode", "decode")), err
    clip_seconds = float(err.split("clip ")[1].split(" s")[0])
    assert abs(clip_seconds - seconds) < 0.1  # 30 fps resampled to 25 fps, the whole recording


def test_raw_video_without_a_face_is_one_error_line(run_dir, tmp_path, capsys):
    path = tmp_path / "wall.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 128, 128, "yuv420p"
        for i in range(20):
            vf = av.VideoFrame.from_ndarray(np.full((128, 128, 3), 100 + i, np.uint8), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            c.mux(vs.encode(vf))
        c.mux(vs.encode(None))
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.random.default_rng(0).uniform(-0.3, 0.3, 12800).astype(np.float32), 16000)
    assert main(["transcribe", str(run_dir), "--video", str(path), "--audio", str(wav), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "video: a face is found on only 0 of 20 frames" in err[0], err
