"""Full training step of the paper-scale presets on a GPU: time, peak memory, batched vs sequential.

    python benchmarks/preset_step.py --device cuda --json preset_step.json
    python benchmarks/preset_step.py --device cpu --presets tiny --steps 2       # a smoke run anywhere

Each preset is built from its architecture with random weights (no checkpoint is needed: speed and memory do
not depend on the weight values), directly on the device, and trained on random raw inputs shaped like LRS3:
`--batch` clips of `--min-seconds`..`--max-seconds` (16 kHz audio, 88x88 mouth crops at 25 fps). One step is
what `mome train` does: frozen encoders (no grad), the Matryoshka loss over every granularity, backward, grad
clip and AdamW, under the preset's precision (bf16 autocast for the paper presets).

Variants (steps interleaved round robin, so that clock or thermal drift hits them alike):

    batched      all granularities in one LLM forward (the default of `mome train`)
    sequential   one forward + backward per granularity, gradients accumulated (the reference code's loop)
    none         batched, with adapter.kind=none (the frozen stack + projectors: the cost MoME adds to)

Printed per preset and variant: median step time, peak allocated memory (torch.cuda.max_memory_allocated, over
the step only, the weights included), encoder time, and the ratios seq/batched and mome/none - 1.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import statistics
import time
import traceback

import torch

from mome.config import Config, load_config
from mome.constants import FPS, SAMPLES_PER_FRAME
from mome.models.avsr import AVSRModel, build_model
from mome.precision import TORCH_DTYPES, resolve_precision

DEFAULT_PRESETS = "paper-mome-23-4-mhsa,paper-mome-23-4-ffn,paper-mome-23-4-layer,paper-llama-avsr,paper-mtsk-mss"
WORDS = (
    "bin lay place set blue green red white at by in with again now please soon the of and to a in that is "
    "was he for it with as his on be at by i this had not are but from or have an they which one you were"
).split()


def make_batch(batch: int, min_s: float, max_s: float, crop: int, device: torch.device, seed: int = 0) -> dict:
    """Random raw clips shaped like the collated batch of `AVDataset` (audio 640 samples per video frame)."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    frames = torch.tensor([round(rng.uniform(min_s, max_s) * FPS) for _ in range(batch)])
    t = int(frames.max())
    return {
        "audio": (0.1 * torch.randn(batch, SAMPLES_PER_FRAME * t, generator=gen)).to(device),
        "audio_lengths": (SAMPLES_PER_FRAME * frames).to(device),
        "video": torch.randn(batch, t, 1, crop, crop, generator=gen).to(device),
        "video_lengths": frames.to(device),
        "texts": [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) for _ in range(batch)],
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(cfg: Config, device: torch.device) -> AVSRModel:
    """Weights are created on the device itself: random init of a 3B LLM on the host would take minutes."""
    with torch.device(device):
        model = build_model(cfg.model)
    return model.to(device).train()


def step(model: AVSRModel, opt: torch.optim.Optimizer, batch: dict, sequential: bool, dtype, device) -> float:
    """One training step; returns the seconds spent in the frozen encoders."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            features = model.encode(batch)
        sync(device)
        encode_s = time.perf_counter() - start
        if sequential:
            for combo in model.combinations:
                (model(features, batch["texts"], [combo]).loss / len(model.combinations)).backward()
        else:
            model(features, batch["texts"]).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
    opt.step()
    return encode_s


def bench_preset(name: str, args, device: torch.device) -> dict:
    cfg = load_config(name)
    precision = resolve_precision(cfg.train.precision, device).precision  # `auto` as `mome train` resolves it
    dtype = None if precision == "fp32" else TORCH_DTYPES[precision]
    if device.type == "cpu" and dtype is not None:
        dtype = torch.bfloat16
    variants = {}
    kinds = {
        "batched": (cfg.model.adapter.kind, False),
        "sequential": (cfg.model.adapter.kind, True),
        "none": ("none", False),
    }
    for label in args.variants.split(","):
        kind, sequential = kinds[label]
        c = copy.deepcopy(cfg)
        c.model.adapter.kind = kind
        variants[label] = (c, sequential)
    batch = make_batch(args.batch, args.min_seconds, args.max_seconds, cfg.data.crop_size, device)
    result: dict = {"preset": name, "precision": precision, "batch": args.batch, "variants": {}}
    for label, (c, sequential) in variants.items():  # one model at a time: a 3B LLM per variant would not fit
        try:
            torch.manual_seed(0)
            start = time.perf_counter()
            model = build(c, device)
            build_s = time.perf_counter() - start
            opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5)
            times, encode = [], []
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for i in range(args.warmup + args.steps):
                sync(device)
                start = time.perf_counter()
                enc = step(model, opt, batch, sequential, dtype, device)
                sync(device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - start)
                    encode.append(enc)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            row = {
                "ms": statistics.median(times) * 1e3,
                "ms_all": [round(t * 1e3, 1) for t in times],
                "encode_ms": statistics.median(encode) * 1e3,
                "peak_gib": peak,
                "build_s": build_s,
                "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
            }
            if args.decode and label == "batched":
                row["decode"] = bench_decode(model, batch, c, dtype, device)
        except Exception as exc:  # one failing variant must not lose the others' numbers
            traceback.print_exc()
            row = {"error": f"{type(exc).__name__}: {exc}"}
        result["variants"][label] = row
        print(
            f"{name:<24} {label:<10} "
            + (
                f"{row['ms']:8.1f} ms  peak {row['peak_gib']:6.2f} GiB  encode "
                f"{row['encode_ms']:6.1f} ms  build {row['build_s']:5.1f} s"
                if "ms" in row
                else row["error"]
            ),
            flush=True,
        )
        model = opt = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    v = result["variants"]
    if "ms" in v.get("batched", {}) and "ms" in v.get("sequential", {}):
        result["speedup_batched"] = v["sequential"]["ms"] / v["batched"]["ms"]
    if "ms" in v.get("batched", {}) and "ms" in v.get("none", {}):
        result["adapter_overhead"] = v["batched"]["ms"] / v["none"]["ms"] - 1
    return result


@torch.no_grad()
def bench_decode(model: AVSRModel, batch: dict, cfg: Config, dtype, device) -> dict:
    """Seconds to transcribe the batch at the finest and the coarsest granularity, greedy and with beams.

    Random weights never emit EOS, so every row decodes exactly `max_new_tokens` (24): equal work per
    granularity, only the prompt length (the A/V tokens) differs. The second of two identical calls is timed."""
    model.eval()
    out = {}
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        features = model.encode(batch)
        for combo in (model.combinations[0], model.combinations[-1]):
            for beams in (1, cfg.decode.num_beams):
                decode = copy.deepcopy(cfg.decode)
                decode.num_beams, decode.max_new_tokens = beams, 24
                model.generate(features, combo, decode)  # warm-up: kernels and allocator for these shapes
                sync(device)
                start = time.perf_counter()
                model.generate(features, combo, decode)
                sync(device)
                out[f"{combo[0]},{combo[1]} beams {beams}"] = round(time.perf_counter() - start, 3)
    model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=DEFAULT_PRESETS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=12, help="clips per step (paper presets: max_frames 1500 = 60 s)")
    parser.add_argument("--min-seconds", type=float, default=4.0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default="batched,sequential,none", help="any of batched, sequential, none")
    parser.add_argument("--decode", action="store_true", help="also time greedy and beam decoding of the batch")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    results = [bench_preset(name, args, device) for name in args.presets.split(",")]
    print(
        f"\nstep = encoders + all granularities + backward + AdamW; batch {args.batch} clips of "
        f"{args.min_seconds}-{args.max_seconds} s; median of {args.steps} steps after {args.warmup}"
    )
    print(
        f"{'preset':<24} {'batched':>10} {'sequential':>11} {'none':>9} {'seq/batched':>12} {'overhead':>9} {'peak GiB':>9}"
    )
    for r in results:
        v = r["variants"]
        ms = {k: (f"{v[k]['ms']:.0f} ms" if "ms" in v.get(k, {}) else "-") for k in ("batched", "sequential", "none")}
        speed = f"{r['speedup_batched']:.2f}x" if "speedup_batched" in r else "-"
        over = f"{100 * r['adapter_overhead']:.1f}%" if "adapter_overhead" in r else "-"
        peak = f"{v['batched']['peak_gib']:.1f}" if "peak_gib" in v.get("batched", {}) else "-"
        print(
            f"{r['preset']:<24} {ms['batched']:>10} {ms['sequential']:>11} {ms['none']:>9} {speed:>12} {over:>9} {peak:>9}"
        )
    for r in results:
        decode = r["variants"].get("batched", {}).get("decode")
        if decode:
            print(
                f"decode {r['preset']} ({args.batch} clips, 24 new tokens each, s): "
                + ", ".join(f"rates {k} {v:.3f}" for k, v in decode.items())
            )
    if args.json:
        meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
