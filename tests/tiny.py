"""Tiny random models and configs shared by the tests (importable as `tiny` thanks to pytest's pythonpath)."""

from __future__ import annotations

import copy

import torch

from mome import config
from mome.config import LLMConfig, ModelConfig

TINY_LLAMA = dict(
    model_type="llama",
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=80,
    max_position_embeddings=256,
    bos_token_id=2,
    eos_token_id=1,
    initializer_range=0.5,  # a random LLM with the default 0.02 cannot make a confident prediction
)
TINY_QWEN2 = {**TINY_LLAMA, "model_type": "qwen2", "bos_token_id": None}  # the same shapes, Qwen2's way
FAST_RUN = [
    "data.num_workers=0",
    "data.max_frames=120",
    "train.num_threads=1",
    "decode.num_beams=1",
    "decode.max_new_tokens=3",
]
"""Overrides that make a tiny model's commands take seconds: small batches, one thread, short greedy decoding."""
FAST_TRAIN = [*FAST_RUN, "train.val_max_batches=1", "train.log_every_steps=1"]
"""FAST_RUN, and one validation batch and a metrics row per step for a tiny training run."""
ADAPTER_KINDS = [kind for kind in config.ADAPTER_KINDS if kind != "none"]  # every kind that adds adapters
# synthesize_corpus keyword arguments for the tiny corpus the data and synthetic tests share (about 2 s)
TINY_CORPUS = dict(
    split_fractions={"train": 0.5, "val": 0.25, "test": 0.25},
    speakers_per_split={"train": 3, "val": 2, "test": 2, "noise": 2},
    babble_seconds=6.0,
    babble_talkers=3,
    workers=1,
    progress=False,
)
# A random Whisper encoder of the real design, small enough for unit tests
TINY_WHISPER = dict(
    d_model=32,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=64,
    num_mel_bins=80,
    vocab_size=128,
)


def tiny_model_config(kind: str = "mome", arch: dict | None = None, **mome) -> ModelConfig:
    """A ModelConfig on a tiny random LLM; `lora` gets a single combination (Llama-AVSR is one-rate)."""
    cfg = ModelConfig(llm=LLMConfig(arch=copy.deepcopy(arch or TINY_LLAMA)))
    cfg.projector.hidden_size = 16
    cfg.adapter.kind = kind
    cfg.adapter.mome.num_routed_experts = 5
    cfg.adapter.mome.top_k = 2
    cfg.adapter.mome.bottleneck = 4
    cfg.adapter.lora.rank_factor = 4
    for k, v in mome.items():
        setattr(cfg.adapter.mome, k, v)
    if kind == "lora":
        cfg.compression.audio_rates, cfg.compression.video_rates = [4], [2]
    return cfg


def autocast_spy(model, monkeypatch) -> list:
    """Record the CPU autocast dtype (None: off) at each encode, generate_scored and generate_rows call of
    `model` (`generate` goes through generate_scored)."""
    seen = []
    for name in ("encode", "generate_scored", "generate_rows"):
        method = getattr(model, name)

        def spy(*args, method=method, **kwargs):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return method(*args, **kwargs)

        monkeypatch.setattr(model, name, spy)
    return seen


def untrained_run(corpus_root, run_dir, overrides: list[str] | None = None):
    """Save an untrained checkpoint of the `tiny` preset on the corpus at `corpus_root` into `run_dir`, as
    `mome train` would lay it out; returns `run_dir`."""
    from mome.config import load_config
    from mome.models.avsr import build_model
    from mome.runs.checkpoint import save_checkpoint

    cfg = load_config("tiny", [f"data.root={corpus_root}", *(overrides or [])])
    torch.manual_seed(cfg.train.seed)
    save_checkpoint(run_dir / "checkpoints", 0, build_model(cfg.model).trainable_state_dict(), cfg, {})
    return run_dir
