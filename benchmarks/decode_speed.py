"""Decode time: what a generated token costs with MoME against the same LLM without adapters, and whether the
coarse rates buy time per utterance, not only tokens.

    .venv/bin/python benchmarks/decode_speed.py --threads 2 --json decode_speed.json
    .venv/bin/python benchmarks/decode_speed.py --models smollm2 --seconds 6 --profile   # where a step goes

From random encoder features of a clip of --seconds (audio 50 Hz, video 25 Hz), greedy decoding of exactly
--tokens new tokens (EOS ignored, so every variant generates as many), batch 1:

    per token   (time of `generate` for N tokens - time for 1 token) / (N - 1): one decode step with the KV
                cache, MoME's hooks and routing included or not (`none`: the adapters detached)
    prefill     the time for 1 token: the LLM over the whole A/V + prompt sequence
    utterance   the time for N tokens, at (4,2) and at (16,5)

The variants are interleaved (round robin) and the median over --repeats is shown. Targets (issue 16):
MoME's per-token time <= 1.3x `none`'s; the utterance at (16,5) saves at least half of what the ratio of LLM
input lengths predicts ((1 - len(16,5) / len(4,2)) / 2 of the (4,2) time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import GenerationConfig

from mome.adapters.context import AdapterContext, adapter_context
from mome.config import LLMConfig, ModelConfig
from mome.constants import AVHUBERT_FRAME_RATE, WHISPER_FRAME_RATE
from mome.models.avsr import AVSRModel, Features

MODELS = {
    "smollm2-4": LLMConfig(path="embedded:smollm2-135m", num_layers=4),  # the demo preset's LLM
    "smollm2": LLMConfig(path="embedded:smollm2-135m"),  # all 30 layers, as deep as the paper's Llama 3.2-3B (28)
}


def build(llm: LLMConfig, kind: str) -> AVSRModel:
    cfg = ModelConfig(llm=llm)
    cfg.adapter.kind = kind
    cfg.projector.layer_norm = False
    torch.manual_seed(0)
    return AVSRModel.from_config(cfg, audio_dim=384, video_dim=768).eval()


def features(seconds: float) -> Features:
    ta, tv = int(seconds * WHISPER_FRAME_RATE), int(seconds * AVHUBERT_FRAME_RATE)
    g = torch.Generator().manual_seed(0)
    return Features(torch.randn(1, ta, 384, generator=g), torch.tensor([ta]),
                    torch.randn(1, tv, 768, generator=g), torch.tensor([tv]))  # fmt: skip


@torch.no_grad()
def timed_generate(model: AVSRModel, feats: Features, combo: tuple[int, int], tokens: int) -> tuple[float, int]:
    """Seconds of greedy generation of exactly `tokens` tokens (pooling and projection included), and the
    LLM input length."""
    start = time.perf_counter()
    seq = model.build_sequences(feats, [combo], None, padding_side="left")
    gen = GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, num_beams=1,
                           eos_token_id=model.builder.eos, pad_token_id=model.builder.pad)  # fmt: skip
    with adapter_context(AdapterContext(model.combinations.index(combo), collect=False)):
        model.llm.generate(inputs_embeds=seq.embeds, attention_mask=seq.attention_mask, generation_config=gen)
    return time.perf_counter() - start, seq.embeds.shape[1]


def measure(models: dict[str, AVSRModel], feats: Features, tokens: int, repeats: int) -> dict[str, dict]:
    runs: dict[tuple[str, tuple, int], list[float]] = {}
    lengths = {}
    for _ in range(repeats + 1):  # the first round warms up
        for name, model in models.items():
            for combo in ((4, 2), (16, 5)):
                for n in (1, tokens):
                    seconds, lengths[combo] = timed_generate(model, feats, combo, n)
                    runs.setdefault((name, combo, n), []).append(seconds)
    median = {k: statistics.median(v[1:]) for k, v in runs.items()}
    out = {}
    for name in models:
        row = {}
        for combo in ((4, 2), (16, 5)):
            key = f"a{combo[0]}_v{combo[1]}"
            full, first = median[(name, combo, tokens)], median[(name, combo, 1)]
            row[key] = {"prefill_ms": 1000 * first, "per_token_ms": 1000 * (full - first) / (tokens - 1),
                        "utterance_ms": 1000 * full, "input_length": lengths[combo]}  # fmt: skip
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-4,smollm2")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length (GRID: about 3 s)")
    parser.add_argument("--tokens", type=int, default=16, help="generated tokens (a GRID sentence: about 12)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="torch.profiler table of one MoME decode")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    feats, results = features(args.seconds), {}
    for name in args.models.split(","):
        models = {kind: build(MODELS[name], kind) for kind in ("mome", "none")}
        table = measure(models, feats, args.tokens, args.repeats)
        results[name] = table
        print(f"\n{name} ({MODELS[name].num_layers or 'all'} layers), {args.seconds:g} s clip, {args.tokens} tokens, "
              f"{torch.get_num_threads()} threads; median of {args.repeats}")  # fmt: skip
        print("| adapter | rates | LLM input | prefill ms | per token ms | utterance ms |")
        print("|---|---|---:|---:|---:|---:|")
        for kind, rows in table.items():
            for key, r in rows.items():
                print(f"| {kind} | {key} | {r['input_length']} | {r['prefill_ms']:.1f} | {r['per_token_ms']:.2f} | "
                      f"{r['utterance_ms']:.0f} |")  # fmt: skip
        mome, none = table["mome"], table["none"]
        ratio = mome["a4_v2"]["per_token_ms"] / none["a4_v2"]["per_token_ms"]
        fine, coarse = mome["a4_v2"], mome["a16_v5"]
        predicted = 1 - coarse["input_length"] / fine["input_length"]
        saved = 1 - coarse["utterance_ms"] / fine["utterance_ms"]
        print(f"per token: MoME / none = {ratio:.2f} (target <= 1.3)")
        print(f"utterance (16,5) vs (4,2): saves {100 * saved:.0f}% of the time; the input lengths predict "
              f"{100 * predicted:.0f}% (target: >= {50 * predicted:.0f}%)")  # fmt: skip
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                timed_generate(models["mome"], feats, (16, 5), args.tokens)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
