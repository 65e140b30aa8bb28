"""The frozen LLM laid out for its compute: bf16 weights where the step or decoding computes in bf16
(`AVSRModel.store_frozen`), int8 linear layers under `decode.quantize: int8` (`AVSRModel.prepare_decoding`,
`mome.models.quantize`), on tiny random LLMs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mome.adapters.context import AdapterContext, adapter_context
from mome.config import DecodeConfig
from mome.errors import ConfigError
from mome.models.avsr import AVSRModel, Features
from mome.precision import autocast, decode_precision
from tiny import ADAPTER_KINDS, TINY_LLAMA, tiny_model_config

TIED = {**TINY_LLAMA, "tie_word_embeddings": True}  # SmolLM2 ties its LM head to the input embeddings
GREEDY = dict(num_beams=1, max_new_tokens=4)


def _model(kind: str = "mome", arch: dict = TIED, seed: int = 0) -> AVSRModel:
    torch.manual_seed(seed)
    model = AVSRModel.from_config(tiny_model_config(kind, arch), audio_dim=12, video_dim=10).eval()
    with torch.no_grad():
        for p in model.adapters.parameters():  # trained-looking adapters: zero up projections would hide them
            p.add_(0.3 * torch.randn_like(p))
    return model


def _features(batch: int = 3) -> Features:
    g = torch.Generator().manual_seed(1)
    lengths_v = torch.tensor([24, 17, 30][:batch])
    return Features(
        torch.randn(batch, 60, 12, generator=g), 2 * lengths_v, torch.randn(batch, 30, 10, generator=g), lengths_v
    )


def _linears(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


# ------------------------------------------------------------------------------------------ bf16 storage
def test_bf16_storage_casts_the_frozen_llm_only() -> None:
    model = _model()
    embeddings = model.llm.get_input_embeddings().weight
    model.store_frozen("bf16")
    assert {p.dtype for p in model.llm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.trainable_parameters()} == {torch.float32}  # projectors, adapters
    assert all(p.requires_grad for p in model.trainable_parameters())
    assert model.llm.lm_head.weight is model.llm.get_input_embeddings().weight is embeddings  # still tied
    rotary = [b for n, b in model.llm.named_buffers() if n.endswith("inv_freq")]
    assert rotary and {b.dtype for b in rotary} == {torch.float32}  # as HF loads a bf16 model


def test_fp32_compute_leaves_the_llm_as_built() -> None:
    model = _model()
    model.store_frozen("fp32")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_fp32_decoding_widens_an_llm_loaded_in_bf16() -> None:
    """The paper presets load the LLM in bf16 (`model.llm.dtype`); where `decode.precision: auto` resolves to fp32
    (a CPU without fast bf16) decoding used to meet bf16 weights with fp32 activations and fail."""
    model = _model()
    model.llm.to(torch.bfloat16)  # as loaded with model.llm.dtype: bf16
    resolved = model.prepare_decoding(DecodeConfig(precision="fp32"), "cpu")
    assert resolved.precision == "fp32" and {p.dtype for p in model.llm.parameters()} == {torch.float32}
    combo = model.combinations[0]
    texts, _ = model.generate_scored(_features(), combo, DecodeConfig(**GREEDY))
    rounded = _model()  # the same weights through bf16 and back: what the widened model holds
    with torch.no_grad():
        for p in rounded.llm.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    assert texts == rounded.generate_scored(_features(), combo, DecodeConfig(**GREEDY))[0]


@pytest.mark.parametrize("kind", ADAPTER_KINDS + ["none"])
def test_bf16_stored_weights_decode_like_autocast(kind: str) -> None:
    """Over the prompt (A/V tokens and text), the next-token distribution equals that of autocast over fp32
    weights: autocast casts each weight to bf16 at every call, rounding it the same way. Generated tokens then
    differ in one thing: their embeddings come from a bf16 table instead of an fp32 one, which on this tiny
    random LLM (wide weights, chaotic) moves a greedy path as much as autocast moves it away from fp32, so
    the transcripts are compared where that cannot reach them: the first token."""
    features, combo = _features(), (4, 2)
    autocast_only, stored = _model(kind), _model(kind)
    assert stored.prepare_decoding(DecodeConfig(precision="bf16"), "cpu").precision == "bf16"
    assert {p.dtype for p in stored.llm.parameters()} == {torch.bfloat16}
    logprobs = {}
    with autocast("bf16", "cpu"):
        for name, model in (("autocast", autocast_only), ("stored", stored)):
            seq = model.build_sequences(features, [combo], None, padding_side="left")
            with torch.no_grad(), adapter_context(AdapterContext(model.combinations.index(combo), collect=False)):
                logits = model.llm(inputs_embeds=seq.embeds, attention_mask=seq.attention_mask).logits[:, -1]
            logprobs[name] = logits.float().log_softmax(-1)
        first = [
            m.generate(features, combo, DecodeConfig(num_beams=1, max_new_tokens=1)) for m in (autocast_only, stored)
        ]
    torch.testing.assert_close(logprobs["stored"], logprobs["autocast"], rtol=0, atol=1e-5)
    assert first[1] == first[0] and len(set(first[0])) > 1  # distinct inputs, distinct outputs: not vacuous


def test_bf16_stored_weights_train_and_only_trainable_weights_get_gradients() -> None:
    model = _model("mome").train()
    model.store_frozen("bf16")
    with autocast("bf16", "cpu"):
        out = model(_features(), ["place red at g nine", "bin blue by a two", "set white with p one"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    assert {v.dtype for v in model.trainable_state_dict().values()} == {torch.float32}


# ------------------------------------------------------------------------------------------ int8
def test_int8_quantises_every_linear_of_the_llm_and_the_tied_head_but_the_mlp_outputs() -> None:
    model = _model()
    table = model.llm.get_input_embeddings().weight.detach().clone()
    down = [name for name in _linears(model.llm) if name.endswith(".mlp.down_proj")]
    assert model.llm.config.tie_word_embeddings and len(down) == model.llm.config.num_hidden_layers
    resolved = model.prepare_decoding(DecodeConfig(quantize="int8"), "cpu")
    assert resolved.precision == "fp32" and resolved.reason.endswith("linear layers in int8")
    assert _linears(model.llm) == down  # q/k/v/o, gate/up and the LM head in int8; down_proj kept in fp32
    assert repr(model.llm.get_output_embeddings()).startswith("DynamicQuantizedLinear(in_features=32, out_features=80")
    embeddings = model.llm.get_input_embeddings()  # the sequence builder's lookup table, left in fp32
    assert embeddings.weight.dtype == torch.float32 and torch.equal(embeddings.weight, table)
    assert {p.dtype for p in model.trainable_parameters()} == {torch.float32}


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_adapters_still_act_on_the_int8_llm(kind: str) -> None:
    """Adapter hooks fire after the layers under them were replaced (LoRA hooks q_proj / v_proj themselves):
    what they add to the logits is what they add on the fp32 LLM, up to int8 rounding; and removing them
    still removes them."""
    ids = torch.randint(0, 80, (2, 9), generator=torch.Generator().manual_seed(2))
    ctx = AdapterContext(0, collect=False)

    def effect(model: AVSRModel) -> torch.Tensor:
        with torch.no_grad(), adapter_context(ctx):
            on = model.llm(ids).logits
            with model.adapter_handle.disabled():
                off = model.llm(ids).logits
        return on - off

    model = _model(kind)
    fp32 = effect(model)
    model.prepare_decoding(DecodeConfig(quantize="int8"), "cpu")
    int8 = effect(model)
    assert fp32.abs().max() > 1.0, "adapters that change nothing would prove nothing"
    assert torch.cosine_similarity(int8.flatten(), fp32.flatten(), dim=0) > 0.9
    with torch.no_grad(), adapter_context(ctx):
        with model.adapter_handle.disabled():
            off = model.llm(ids).logits
        model.adapter_handle.remove()
        torch.testing.assert_close(model.llm(ids).logits, off, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["mome", "lora"])
def test_int8_decoding_stays_close_to_fp32(kind: str) -> None:
    """Greedy decoding through the sequence builder and `generate` runs on the int8 LLM, and its next-token
    logits after the prompt point where fp32's do: cosine >= 0.9 per row. A tiny random LLM with wide weights
    magnifies int8 rounding (its logits were off by 5-25% of their norm when written), so the bound catches a
    broken quantisation (wrong weights, a lost layer: cosine near 0) rather than measuring accuracy; the WER
    cost on a real model is measured (docs/benchmarks.md)."""
    features, combo = _features(), (4, 2)
    fp32, int8 = _model(kind), _model(kind)
    int8.prepare_decoding(DecodeConfig(quantize="int8"), "cpu")
    seq = fp32.build_sequences(features, [combo], None, padding_side="left")
    ctx = AdapterContext(fp32.combinations.index(combo), collect=False)
    with torch.no_grad(), adapter_context(ctx):
        want = fp32.llm(inputs_embeds=seq.embeds, attention_mask=seq.attention_mask).logits[:, -1]
        got = int8.llm(inputs_embeds=seq.embeds, attention_mask=seq.attention_mask).logits[:, -1]
    assert (torch.cosine_similarity(got, want, dim=-1) >= 0.9).all()
    assert not torch.equal(got, want), "int8 logits equal to fp32's: nothing was quantised"
    texts, confidences = int8.generate_scored(features, combo, DecodeConfig(**GREEDY))
    assert len(texts) == 3 and torch.isfinite(torch.tensor(confidences)).all()


def test_int8_is_refused_on_cuda_and_with_an_explicit_bf16() -> None:
    with pytest.raises(ConfigError, match=r"^decode\.quantize: int8 runs on CPUs only, not on cuda"):
        decode_precision(DecodeConfig(quantize="int8"), "cuda")  # refused before any CUDA call
    with pytest.raises(ConfigError, match=r"^decode\.quantize: int8 decodes in fp32; decode\.precision=bf16"):
        decode_precision(DecodeConfig(quantize="int8", precision="bf16"), "cpu")


def test_int8_under_auto_decodes_in_fp32_where_bf16_is_native(monkeypatch) -> None:
    import mome.precision

    monkeypatch.setattr(mome.precision, "read_cpuinfo", lambda: "flags\t: avx2 avx512_bf16\n")
    assert decode_precision(DecodeConfig(), "cpu").precision == "bf16"
    resolved = decode_precision(DecodeConfig(quantize="int8"), "cpu")
    assert (resolved.requested, resolved.precision) == ("auto", "fp32")
    assert resolved.reason == "int8 decoding runs in fp32; linear layers in int8"


def test_a_model_is_laid_out_for_one_decoding_only() -> None:
    model = _model()
    model.prepare_decoding(DecodeConfig(precision="fp32"), "cpu")  # nothing to change: any layout may follow
    model.prepare_decoding(DecodeConfig(quantize="int8"), "cpu")
    model.prepare_decoding(DecodeConfig(quantize="int8", precision="fp32"), "cpu")  # the same layout again
    with pytest.raises(ValueError, match=r"laid out for decoding in \('fp32', 'int8'\), not \('bf16', 'none'\)"):
        model.prepare_decoding(DecodeConfig(precision="bf16"), "cpu")
    untouched = copy.deepcopy(_model())
    assert _linears(untouched.llm)
