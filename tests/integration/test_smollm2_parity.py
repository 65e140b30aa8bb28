"""SmolLM2-135M (integration): adapters in their initial state leave the real LLM's logits unchanged, and the
whole AVSRModel (real tokenizer, BOS/EOS of SmolLM2) trains one forward and decodes greedily on it.

The reference is the untouched Hugging Face model, loaded separately with plain `from_pretrained` from the
same converted directory. mome adds 4 marker tokens to the vocabulary, so logits are compared on the
original 49,152 entries (tied embeddings: those rows of the LM head are the checkpoint's).
"""

from __future__ import annotations

import pytest
import torch

from mome.config import (
    ADAPTER_KINDS,
    DecodeConfig,
    LLMConfig,
    ModelConfig,
    combination_key,
)

pytestmark = pytest.mark.integration

SENTENCE = "The capital of France is Paris, and the river that runs through it is the Seine."
TEXTS = ["place red at g nine now", "bin blue by a two again"]


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    """(converted dir, plain HF model, plain tokenizer, mome's LoadedLLM), loaded once for the module."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mome.models.llm import load_llm

    path = smollm2_dir
    reference = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    loaded = load_llm(LLMConfig(path=str(path)))
    return path, reference, tokenizer, loaded


@pytest.fixture(scope="module")
def inputs(smollm2):
    """Random inputs_embeds with right padding on row 1, a real sentence's ids, and the reference logits."""
    _, reference, tokenizer, _ = smollm2
    generator = torch.Generator().manual_seed(0)
    weight = reference.get_input_embeddings().weight.detach()
    embeds = torch.randn(2, 12, weight.shape[1], generator=generator) * weight.std()  # [B, L, D]
    mask = torch.tensor([[1] * 12, [1] * 9 + [0] * 3])
    ids = tokenizer(SENTENCE, return_tensors="pt").input_ids  # [1, L]
    with torch.no_grad():
        return {
            "embeds": embeds,
            "mask": mask,
            "ids": ids,
            "want_embeds": reference(inputs_embeds=embeds, attention_mask=mask).logits,
            "want_ids": reference(input_ids=ids).logits,
        }


def _model_config(kind: str) -> ModelConfig:
    cfg = ModelConfig(llm=LLMConfig(path="embedded:smollm2-135m"))
    cfg.projector.hidden_size = 64
    cfg.adapter.kind = kind  # MoME-23/4, 1 shared, b = 12 (defaults); LoRA rank d/32
    if kind == "lora":  # Llama-AVSR: one granularity
        cfg.compression.audio_rates, cfg.compression.video_rates = [4], [2]
    return cfg


def _features(batch: int = 2, audio_dim: int = 32, video_dim: int = 24):
    from mome.models.avsr import Features

    video_lengths = torch.tensor([25, 15][:batch])  # 1 s and 0.6 s at 25 Hz: short rows keep the test fast
    audio_lengths = 2 * video_lengths  # 50 Hz
    return Features(
        torch.randn(batch, int(audio_lengths.max()), audio_dim),
        audio_lengths,
        torch.randn(batch, int(video_lengths.max()), video_dim),
        video_lengths,
    )


def test_loaded_llm_is_the_checkpoint(smollm2) -> None:
    _, reference, tokenizer, loaded = smollm2
    config = loaded.model.config
    assert config.num_hidden_layers == 30 and config.hidden_size == 576
    assert loaded.tokenizer.bos_token_id == tokenizer.bos_token_id == reference.config.bos_token_id == 1
    assert loaded.tokenizer.eos_token_id == tokenizer.eos_token_id == reference.config.eos_token_id == 2
    vocab = reference.config.vocab_size
    assert len(loaded.tokenizer) == vocab + 4  # <audio> </audio> <video> </video>; SmolLM2 has a pad token
    torch.testing.assert_close(
        loaded.model.get_input_embeddings().weight[:vocab], reference.get_input_embeddings().weight
    )


@pytest.mark.parametrize("kind", ADAPTER_KINDS)  # none, lora, mtsk-ms, mtsk-ss, mtsk-mss, mome
def test_initial_adapters_leave_smollm2_logits_unchanged(smollm2, inputs, kind: str) -> None:
    from mome.adapters.context import AdapterContext, adapter_context
    from mome.models.avsr import AVSRModel

    _, reference, tokenizer, loaded = smollm2
    vocab = reference.config.vocab_size
    assert inputs["ids"].tolist() == tokenizer(SENTENCE, return_tensors="pt").input_ids.tolist()
    model = AVSRModel(_model_config(kind), loaded, audio_dim=32, video_dim=24)  # hooks onto the shared LLM
    try:
        llm = model.llm
        embeds, mask, ids = inputs["embeds"], inputs["mask"], inputs["ids"]
        want_embeds, want_ids = inputs["want_embeds"], inputs["want_ids"]
        assert ids.tolist() == loaded.tokenizer(SENTENCE, return_tensors="pt").input_ids.tolist()
        # Rows at different granularities (per-granularity LoRA banks and routers), padding mask set.
        ctx = AdapterContext(torch.tensor([0, len(model.combinations) - 1]), mask.bool())

        def wrapped_logits() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad(), adapter_context(ctx):
                a = llm(inputs_embeds=embeds, attention_mask=mask).logits[..., :vocab]
            with torch.no_grad(), adapter_context(AdapterContext(len(model.combinations) - 1)):
                b = llm(input_ids=ids).logits[..., :vocab]
            return a, b

        got_embeds, got_ids = wrapped_logits()
        torch.testing.assert_close(got_embeds, want_embeds, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(got_ids, want_ids, rtol=1e-5, atol=1e-4)
        if kind != "none":  # the hooks are live: moved away from their zero start, adapters change the logits
            with torch.no_grad():
                for p in model.adapters.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            moved, _ = wrapped_logits()
            assert not torch.allclose(moved, want_embeds, atol=1e-2)
    finally:
        model.adapter_handle.remove()  # give the shared LLM back unhooked


def test_avsr_forward_and_greedy_generate_on_smollm2(smollm2) -> None:
    from mome.models.avsr import AVSRModel
    from mome.models.sequence import IGNORE_INDEX

    _, _, tokenizer, loaded = smollm2
    torch.manual_seed(0)
    model = AVSRModel(_model_config("mome"), loaded, audio_dim=32, video_dim=24)
    try:
        features = _features()
        seq = model.build_sequences(features, model.combinations[:1], TEXTS, padding_side="right")
        assert seq.embeds.shape[-1] == 576
        first_row = seq.labels[0][seq.labels[0] != IGNORE_INDEX].tolist()
        assert first_row == tokenizer(TEXTS[0], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        assert model.builder.bos == tokenizer.bos_token_id and model.builder.eos == tokenizer.eos_token_id

        model.train()
        out = model(features, TEXTS)
        assert set(out.ce) == {combination_key(c) for c in model.combinations}
        assert torch.isfinite(out.loss) and out.loss > 0 and "load_balance" in out.aux
        out.loss.backward()
        assert all(p.grad is not None for p in model.audio_projectors.parameters())

        model.eval()
        hyps = model.generate(features, model.combinations[-1], DecodeConfig(num_beams=1, max_new_tokens=3))
        assert len(hyps) == features.batch_size and all(isinstance(h, str) for h in hyps)
    finally:
        model.adapter_handle.remove()


def test_remove_restores_the_plain_model(smollm2, inputs) -> None:
    """After every test above removed its hooks, the shared LLM again gives the reference logits."""
    _, reference, _, loaded = smollm2
    with torch.no_grad():
        got = loaded.model(input_ids=inputs["ids"]).logits[..., : reference.config.vocab_size]
    torch.testing.assert_close(got, inputs["want_ids"], rtol=1e-5, atol=1e-4)
    assert not any(m._forward_hooks for m in loaded.model.modules())
