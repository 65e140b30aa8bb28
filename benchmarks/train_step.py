"""Training-step time: packed vs padded vs sequential granularities, and MoME vs no adapter.

    .venv/bin/python benchmarks/train_step.py --threads 2 --steps 5 --warmup 1 --json train_step.json
    .venv/bin/python benchmarks/train_step.py --models smollm2-8 --profile      # where the time goes

One step = zero_grad, forward, backward and an AdamW step on the trainable parameters (projectors, adapters),
from random encoder features (audio 50 Hz, video 25 Hz, clips of --min-seconds..--max-seconds) and GRID-like
transcripts of ~10 words, at audio rates {4, 16} x video rates {2, 5}:

    packed       `model(features, texts)`: all 4 granularities in one LLM forward, the 4 x B rows packed
                 into fewer rows of the longest row's length (the training default)
    batched      `model(features, texts, packed=False)`: the same forward, one right-padded row per
                 (sample, granularity)
    sequential   for each granularity: `model(features, texts, [combo], packed=False)` + backward of
                 loss / 4 (the reference's loop), gradients accumulated, then one optimiser step
    none         `batched` with adapter.kind=none (projectors still train): the frozen LLM's own cost

Adapters are MoME-23/4 (1 shared expert, bottleneck 12, parallel to MHSA) as in the paper. The steps of all
variants of one model are interleaved (round robin), so machine noise hits them alike; the table shows the
median over --steps after --warmup. Targets: batched >= 1.5x faster than sequential; MoME adds <= 10 % to
the step of `none`; `batched/packed` says what packing saves (no target; the token column says how many
positions it leaves out). On a shared machine prefer `--threads 1` and read the CPU-time rows: process CPU
time barely moves with other jobs' load, while wall time at 2 threads swung 2-3x between identical steps here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import time
from dataclasses import dataclass

import torch

from mome.config import LLMConfig, ModelConfig
from mome.constants import AVHUBERT_FRAME_RATE, WHISPER_FRAME_RATE, exact_div
from mome.models.avsr import AVSRModel, Features
from mome.models.llm import LoadedLLM, load_llm
from mome.models.sequence import pack

TINY_LLAMA = {  # the `tiny` preset's LLM
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 96,
    "max_position_embeddings": 512,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "tie_word_embeddings": True,
}

# name -> (LLMConfig, audio feature width, video feature width, projector hidden width)
MODELS: dict[str, tuple[LLMConfig, int, int, int]] = {
    "tiny": (LLMConfig(arch=TINY_LLAMA), 32, 32, 64),
    "smollm2-8": (LLMConfig(path="embedded:smollm2-135m", num_layers=8), 384, 768, 2048),  # the CPU demo's LLM
    "smollm2": (LLMConfig(path="embedded:smollm2-135m"), 384, 768, 2048),  # all 30 layers
}

WORDS = {  # GRID-like sentences, ~10 words each
    "command": ["bin", "lay", "place", "set"],
    "colour": ["blue", "green", "red", "white"],
    "prep": ["at", "by", "in", "with"],
    "letter": list("abcdefghijklmnopqrstuvxyz"),
    "digit": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "adverb": ["again", "now", "please", "soon"],
}

TARGET_SPEEDUP = 1.5  # sequential / batched
TARGET_OVERHEAD = 0.10  # MoME step / none step - 1


def sentence(rng: random.Random) -> str:
    w = {k: rng.choice(v) for k, v in WORDS.items()}
    return (
        f"{w['command']} {w['colour']} {w['prep']} {w['letter']} {w['digit']} {w['adverb']} "
        f"and then {rng.choice(WORDS['command'])} {rng.choice(WORDS['colour'])}"
    )


def make_inputs(batch: int, audio_dim: int, video_dim: int, min_s: float, max_s: float, seed: int = 0):
    """Random encoder features [B, T_a, D_a] at 50 Hz and [B, T_v, D_v] at 25 Hz, plus transcripts."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    video_lengths = torch.tensor([round(rng.uniform(min_s, max_s) * AVHUBERT_FRAME_RATE) for _ in range(batch)])
    audio_lengths = exact_div(WHISPER_FRAME_RATE, AVHUBERT_FRAME_RATE) * video_lengths
    features = Features(
        torch.randn(batch, int(audio_lengths.max()), audio_dim, generator=gen),
        audio_lengths,
        torch.randn(batch, int(video_lengths.max()), video_dim, generator=gen),
        video_lengths,
    )
    return features, [sentence(rng) for _ in range(batch)]


def model_config(llm: LLMConfig, kind: str, projector_hidden: int) -> ModelConfig:
    cfg = ModelConfig(llm=copy.deepcopy(llm))
    cfg.compression.audio_rates, cfg.compression.video_rates = [4, 16], [2, 5]
    cfg.projector.hidden_size = projector_hidden
    cfg.adapter.kind = kind  # MoME-23/4, 1 shared, b = 12, MHSA: the MoMEConfig defaults
    return cfg


@dataclass
class Variant:
    name: str
    model: AVSRModel
    optimizer: torch.optim.Optimizer
    sequential: bool
    packed: bool
    times: list[float]  # wall seconds per step
    cpu: list[float]  # process CPU seconds per step (all threads): robust to other jobs at --threads 1


def train_step(v: Variant, features: Features, texts: list[str]) -> None:
    v.optimizer.zero_grad(set_to_none=True)
    if v.sequential:  # the reference: one forward + backward per granularity, gradients accumulated
        for combo in v.model.combinations:
            (v.model(features, texts, [combo], packed=False).loss / len(v.model.combinations)).backward()
    else:
        v.model(features, texts, packed=v.packed).loss.backward()
    v.optimizer.step()


def build_variants(name: str, llm: LoadedLLM, audio_dim: int, video_dim: int, hidden: int) -> list[Variant]:
    llm_cfg = MODELS[name][0]
    variants = []
    for kind in ("mome", "none"):
        torch.manual_seed(0)
        loaded = LoadedLLM(copy.deepcopy(llm.model), llm.tokenizer)  # hooks must not reach the other variant
        model = AVSRModel(model_config(llm_cfg, kind, hidden), loaded, audio_dim, video_dim).train()
        for layout in ("packed", "batched", "sequential") if kind == "mome" else ("batched",):
            opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)  # tiny lr: the model barely moves
            variants.append(Variant(f"{layout} {kind}", model, opt, layout == "sequential", layout == "packed", [], []))
    return variants


def sequence_stats(model: AVSRModel, features: Features, texts: list[str]) -> dict:
    """Real vs padded LLM tokens of the packed, batched and sequential layouts."""
    with torch.no_grad():
        rows = model.build_sequences(features, model.combinations, texts, "right")
        batched, packed = rows.attention_mask, pack(rows).attention_mask
        seq = [model.build_sequences(features, [c], texts, "right").attention_mask for c in model.combinations]
    return {
        "rows": batched.shape[0],
        "packed_rows": packed.shape[0],
        "real_tokens": int(batched.sum()),
        "packed_padded_tokens": packed.numel(),
        "batched_padded_tokens": batched.numel(),
        "sequential_padded_tokens": sum(m.numel() for m in seq),
        "label_tokens": sum(len(t) for t in model.builder.encode_targets(texts)) * len(model.combinations),
        "row_lengths": [int(x) for x in batched.sum(1).view(len(model.combinations), -1).float().mean(1)],
    }


def bench_model(name: str, args) -> dict:
    llm_cfg, audio_dim, video_dim, hidden = MODELS[name]
    llm = load_llm(llm_cfg)
    features, texts = make_inputs(args.batch, audio_dim, video_dim, args.min_seconds, args.max_seconds)
    variants = build_variants(name, llm, audio_dim, video_dim, hidden)
    del llm
    stats = sequence_stats(variants[0].model, features, texts)
    for i in range(args.warmup + args.steps):  # round robin: noise hits every variant alike
        for v in variants:
            start, start_cpu = time.perf_counter(), time.process_time()
            train_step(v, features, texts)
            if i >= args.warmup:
                v.times.append(time.perf_counter() - start)
                v.cpu.append(time.process_time() - start_cpu)
    ms = {v.name: statistics.median(v.times) * 1e3 for v in variants}
    cpu_ms = {v.name: statistics.median(v.cpu) * 1e3 for v in variants}
    result = {
        "model": name,
        "layers": variants[0].model.llm.config.num_hidden_layers,
        "ms": ms,
        "ms_all": {v.name: [round(t * 1e3, 1) for t in v.times] for v in variants},
        "cpu_ms": cpu_ms,
        "speedup_batched": ms["sequential mome"] / ms["batched mome"],
        "speedup_packed": ms["batched mome"] / ms["packed mome"],
        "mome_overhead": ms["batched mome"] / ms["batched none"] - 1,
        "cpu_speedup_batched": cpu_ms["sequential mome"] / cpu_ms["batched mome"],
        "cpu_speedup_packed": cpu_ms["batched mome"] / cpu_ms["packed mome"],
        "cpu_mome_overhead": cpu_ms["batched mome"] / cpu_ms["batched none"] - 1,
        "trainable_params": {v.name: sum(p.numel() for p in v.model.trainable_parameters()) for v in variants},
        **stats,
    }
    if args.profile:
        for v in variants:
            profile(v, features, texts, args.profile_rows)
    return result


def profile(v: Variant, features: Features, texts: list[str], rows: int) -> None:
    """Operator table of one step of `v` (self CPU time), forward and backward together."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof, record_function("## step"):
        train_step(v, features, texts)
    print(f"\n--- profile: {v.name}, one step ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def print_table(results: list[dict], args) -> None:
    load = os.getloadavg()
    print(
        f"\ntrain step, batch {args.batch} clips of {args.min_seconds}-{args.max_seconds} s, "
        f"4 granularities, threads {args.threads}, median of {args.steps} steps (warmup {args.warmup}), "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    head = f"{'model':<10} {'L':>3} {'tokens real/packed/batched/seq':>31} {'packed mome':>12} {'batched mome':>13}"
    head += (
        f" {'seq mome':>10} {'batched none':>13} {'batched/packed':>15} {'seq/batched':>12} {'':4} {'mome/none-1':>11}"
    )
    print(head)
    for r in results:
        ok1 = "PASS" if r["speedup_batched"] >= TARGET_SPEEDUP else "FAIL"
        ok2 = "PASS" if r["mome_overhead"] <= TARGET_OVERHEAD else "FAIL"
        tokens = (
            f"{r['real_tokens']}/{r['packed_padded_tokens']}/{r['batched_padded_tokens']}/"
            f"{r['sequential_padded_tokens']}"
        )
        ms = r["ms"]
        print(
            f"{r['model']:<10} {r['layers']:>3} {tokens:>31} {ms['packed mome']:>9.1f} ms {ms['batched mome']:>10.1f} ms"
            f" {ms['sequential mome']:>7.1f} ms {ms['batched none']:>10.1f} ms {r['speedup_packed']:>14.2f}x"
            f" {r['speedup_batched']:>11.2f}x {ok1:4} {100 * r['mome_overhead']:>10.1f}% {ok2:4}"
        )
    print("same, in process CPU time (less sensitive to other jobs; OpenMP spin-waits count at --threads > 1):")
    for r in results:
        ms = r["cpu_ms"]
        print(
            f"{r['model']:<10} {r['layers']:>3} {'':>31} {ms['packed mome']:>9.1f} ms {ms['batched mome']:>10.1f} ms"
            f" {ms['sequential mome']:>7.1f} ms {ms['batched none']:>10.1f} ms {r['cpu_speedup_packed']:>14.2f}x"
            f" {r['cpu_speedup_batched']:>11.2f}x {'':4} {100 * r['cpu_mome_overhead']:>10.1f}%"
        )
    print(f"targets: seq/batched >= {TARGET_SPEEDUP}x, MoME overhead <= {100 * TARGET_OVERHEAD:.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2-8,smollm2", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--profile", action="store_true", help="print an operator profile of one step of each variant")
    parser.add_argument("--profile-rows", type=int, default=25)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    results = []
    for name in args.models.split(","):
        results.append(bench_model(name, args))
        print(f"{name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in results[-1]["ms"].items()), flush=True)
    print_table(results, args)
    if args.json:
        meta = {
            "threads": args.threads,
            "batch": args.batch,
            "steps": args.steps,
            "warmup": args.warmup,
            "loadavg": os.getloadavg(),
            "torch": torch.__version__,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
