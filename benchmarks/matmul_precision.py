"""Matmul speed in fp32 vs bf16 on this machine, next to what `auto` resolves to here (`mome.precision`).

    .venv/bin/python benchmarks/matmul_precision.py --threads 2 --repeats 3 --json out.json

Times `A @ B` with A [M, K] and B [K, N] (default 2048 x 1536 x 1536, the size of a SmolLM2-135M-wide
projection of a 2k-token batch) in each dtype, interleaved round robin after one warm-up each, and prints the
median GFLOP/s (2MKN / time) and the bf16 / fp32 ratio. Without native bf16 (AVX512-BF16, AMX, Arm BF16, an
Ampere+ GPU) the bf16 product is emulated: expect seconds per call on such a CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mome.precision import TORCH_DTYPES, resolve_precision


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[2048, 1536, 1536], metavar=("M", "K", "N"))
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, from fp32, bf16, fp16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    m, k, n = args.shape
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    names = args.dtypes.split(",")
    pairs = {d: (a32.to(device, TORCH_DTYPES[d]), b32.to(device, TORCH_DTYPES[d])) for d in names}
    times: dict[str, list[float]] = {d: [] for d in names}
    for d in names:  # warm-up: kernel choice, allocator
        torch.matmul(*pairs[d])
    sync(device)
    for _ in range(args.repeats):
        for d in names:
            start = time.perf_counter()
            torch.matmul(*pairs[d])
            sync(device)
            times[d].append(time.perf_counter() - start)
    resolved = resolve_precision("auto", device)
    result = {
        "shape": [m, k, n],
        "threads": args.threads,
        "device": str(device),
        "hardware": resolved.hardware,
        "auto": resolved.precision,
        "auto_reason": resolved.reason,
        "gflops": {d: round(2 * m * k * n / statistics.median(t) / 1e9, 2) for d, t in times.items()},
    }
    for d, gflops in result["gflops"].items():
        print(f"{d}: {gflops:.2f} GFLOP/s (median of {args.repeats})")
    if "fp32" in result["gflops"] and "bf16" in result["gflops"]:
        print(f"bf16 / fp32: {result['gflops']['bf16'] / result['gflops']['fp32']:.3g}x")
    print(f"auto -> {resolved.precision} ({resolved.reason}) on {resolved.hardware}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
