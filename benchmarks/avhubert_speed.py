"""AV-HuBERT encoding time per second of video on this CPU (random weights, eval, no grad).

    .venv/bin/python benchmarks/avhubert_speed.py --archs base compact --seconds 1 4 --threads 2 --json out.json

One second of video is 25 frames of 88x88 (the model's input after the centre crop). The figure printed is
wall-clock seconds of compute per second of video (a real-time factor), the median of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mome.constants import FPS
from mome.constants import MODEL_CROP_SIZE as SIZE
from mome.models.avhubert import build_avhubert


def time_encoder(arch: str, seconds: float, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_avhubert(arch)
    video = torch.randn(1, int(seconds * FPS), 1, SIZE, SIZE)  # [B, T, 1, H, W]
    with torch.inference_mode():
        model(video)  # warm-up (allocator, oneDNN kernels)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(video)
            runs.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    median = statistics.median(runs)
    return {"arch": arch, "params_m": params / 1e6, "video_s": seconds, "wall_s": median, "rtf": median / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["base", "compact"])
    parser.add_argument("--seconds", nargs="+", type=float, default=[1.0, 4.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; default: torch's choice")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = []
    for arch in args.archs:
        for seconds in args.seconds:
            r = time_encoder(arch, seconds, args.repeats)
            results.append(r)
            print(
                f"{arch:8s} {r['params_m']:7.1f}M params  {seconds:4.1f} s of video: {r['wall_s']:7.3f} s  "
                f"-> {r['rtf']:.3f} s per second of video"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
