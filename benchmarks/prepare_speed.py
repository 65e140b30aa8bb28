"""Speed of `mome prepare-lrs` in source frames per second, over all local cores.

Builds an LRS3-like tree (default 8 clips x 3 s of 224x224 video at 25 fps, the LRS3 frame size) from
scikit-image's astronaut photograph, moved and scaled per frame, with an AAC audio track; then times the
crop stage (decode, dlib HOG + 68 landmarks, smoothing, alignment, 96x96 crop, x264 + wav writing) with
`--workers` processes (pool start-up included). Target: >= 60 frames/s on 2 cores (2x real time at 25 fps).

    nice -n 19 .venv/bin/python benchmarks/prepare_speed.py [--clips 8] [--seconds 3] [--workers 2] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mome.constants import FPS, SAMPLE_RATE
from mome.data.media import write_video


def astronaut_frames(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    from skimage import data

    img, rng = data.astronaut(), np.random.default_rng(seed)
    a, b = rng.uniform(0, 2 * np.pi, 2)
    out = []
    for t in range(n):
        phase = 2 * np.pi * t / n
        s, dx, dy = 1.0 + 0.12 * np.sin(phase + a), 14 * np.sin(1.3 * phase + b), 10 * np.cos(phase)
        m = np.array([[s, 0, size / 2 + dx - s * 220.0], [0, s, size / 2 + dy - s * 125.0]])
        out.append(cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def write_clip(stem: Path, frames: np.ndarray, seconds: float) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    write_video(stem.with_suffix(".mp4"), frames, audio=audio.astype(np.float32) / 32767)
    stem.with_suffix(".txt").write_text(
        "Text:  HELLO THERE\nConf:  3\n\nWORD START END ASDSCORE\nHELLO 0.20 0.60 5.0\nTHERE 0.70 1.10 5.0\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()

    from mome.lrs.prepare import prepare_lrs

    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "lrs3", Path(tmp) / "out"
        n = round(args.seconds * FPS)
        for i in range(args.clips):
            write_clip(root / "trainval" / f"spk{i % 3}" / f"{i:05d}", astronaut_frames(n, seed=i), args.seconds)
        start = time.perf_counter()
        report = prepare_lrs(root, out, "lrs3", workers=args.workers, val_fraction=0, progress=False)
        wall = time.perf_counter() - start
    frames = report["this_run"]["frames"]
    result = {
        "clips": args.clips,
        "seconds_per_clip": args.seconds,
        "workers": args.workers,
        "frames": frames,
        "wall_s": round(wall, 2),
        "frames_per_second": round(frames / wall, 1),
        "real_time_factor": round(frames / wall / FPS, 2),
        "written": report["written"],
        "skipped": len(report["skipped"]),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
