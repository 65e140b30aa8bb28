"""AVSRModel on tiny random LLMs: parity with plain HF, batched = sequential, trainability, overfitting."""

from __future__ import annotations

import copy

import pytest
import torch

from mome.config import DecodeConfig, combination_key
from mome.models.avsr import AVSRModel, Features
from mome.models.llm import dense_strides
from tiny import ADAPTER_KINDS, TINY_LLAMA, TINY_QWEN2, tiny_model_config

TEXTS = ["place red at g nine", "bin blue by a two", "set white with p one", "lay green in z soon"]


def _features(batch: int = 3, audio_dim: int = 12, video_dim: int = 10) -> Features:
    lengths_v = torch.tensor([24, 17, 9, 30][:batch])
    lengths_a = 2 * lengths_v  # 50 Hz audio, 25 Hz video
    return Features(
        torch.randn(batch, int(lengths_a.max()), audio_dim),
        lengths_a,
        torch.randn(batch, int(lengths_v.max()), video_dim),
        lengths_v,
    )


def _model(kind: str, arch: dict = TINY_LLAMA, **mome) -> AVSRModel:
    return AVSRModel.from_config(tiny_model_config(kind, arch, **mome), audio_dim=12, video_dim=10)


@pytest.mark.parametrize("arch", [TINY_LLAMA, TINY_QWEN2], ids=["llama", "qwen2"])
@pytest.mark.parametrize("kind", ADAPTER_KINDS + ["none"])
def test_initial_adapters_leave_the_llm_unchanged(kind: str, arch: dict) -> None:
    model = _model(kind, arch)
    reference = copy.deepcopy(model.llm)
    model.adapter_handle.remove()  # the copy above carries no hooks ...
    model = _model(kind, arch)  # ... so rebuild the model under test with the same seed-free weights
    model.llm.load_state_dict(reference.state_dict())
    x = torch.randn(2, 7, model.llm.config.hidden_size)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    for m in model.adapters.modules():  # MoME routers are random: make sure routing actually runs
        if hasattr(m, "router") and m.router is not None:
            assert m.router.abs().sum() > 0
    got = model.llm(inputs_embeds=x, attention_mask=mask).logits
    want = reference(inputs_embeds=x, attention_mask=mask).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # Hooks leave the HF module tree and state-dict keys alone, and remove() restores the plain model.
    assert list(model.llm.state_dict()) == list(reference.state_dict())
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.add_(0.5)
    if kind != "none":
        assert not torch.allclose(model.llm(inputs_embeds=x, attention_mask=mask).logits, want, atol=1e-4)
        with model.adapter_handle.disabled():
            torch.testing.assert_close(model.llm(inputs_embeds=x, attention_mask=mask).logits, want, rtol=0, atol=1e-6)
    model.adapter_handle.remove()
    torch.testing.assert_close(model.llm(inputs_embeds=x, attention_mask=mask).logits, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ADAPTER_KINDS + ["none"])
def test_model_moves_with_to(kind: str) -> None:
    """`model.to(device)` is how a GPU run starts: no adapter module may shadow nn.Module's own methods
    (a LoRA method once named `_apply` broke `.to()` for every LoRA baseline)."""
    model = _model(kind).to(torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    out = model(_double(_features()), TEXTS[:3])
    assert torch.isfinite(out.loss)


def _double(f: Features) -> Features:
    return Features(f.audio.double(), f.audio_lengths, f.video.double(), f.video_lengths)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_trains_under_bf16_autocast_with_a_bf16_llm(kind: str) -> None:
    """The paper presets train in bf16 (`train.precision`): a bf16 LLM under autocast. MoME's router must
    still decide in fp32, and gradients must reach every trainable tensor."""
    cfg = tiny_model_config(kind)
    cfg.llm.dtype = "bf16"
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10).train()
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.add_(0.01)  # zero-initialised up projections would leave the routers without gradient
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_features(), TEXTS[:3])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for m in model.adapters.modules():
        if getattr(m, "router", None) is not None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = m.router_logits(
                    torch.randn(5, m.router.shape[-1], dtype=torch.bfloat16), torch.zeros(5, dtype=torch.long)
                )
            assert logits.dtype == torch.float32


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_batched_loss_equals_sequential_loss(kind: str) -> None:
    model = _model(kind, shared_router=(kind != "mome"))  # MoME with per-granularity routers: the hard case
    with torch.no_grad():  # move adapters away from their zero start so that they matter
        for p in model.adapters.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.train()
    features = _features()
    batched = model(features, TEXTS[:3])
    ce, lb = [], []
    for combo in model.combinations:
        single = model(features, TEXTS[:3], [combo])
        ce.append(single.ce[combination_key(combo)])
        lb.append(single.aux.get("load_balance", torch.tensor(0.0)))
    torch.testing.assert_close(batched.lm_loss, torch.stack(ce).mean(), rtol=1e-5, atol=1e-6)
    for combo, value in zip(model.combinations, ce):
        torch.testing.assert_close(batched.ce[combination_key(combo)], value, rtol=1e-5, atol=1e-6)
    if kind == "mome":
        torch.testing.assert_close(batched.aux["load_balance"], torch.stack(lb).mean(), rtol=1e-5, atol=1e-6)
        assert batched.loss > batched.lm_loss


def test_combination_weights_scale_the_loss() -> None:
    cfg = tiny_model_config("mtsk-ms")
    cfg.combination_weights = {"a16_v5": 3.0}
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10)
    out = model(_features(), TEXTS[:3])
    ce = torch.stack([out.ce[combination_key(c)] for c in model.combinations])
    torch.testing.assert_close(out.lm_loss, (ce * torch.tensor([1.0, 1.0, 1.0, 3.0])).sum() / 4)


def test_only_projectors_and_adapters_train() -> None:
    model = _model("mome")
    model.train()
    assert not model.llm.training and all(not p.requires_grad for p in model.llm.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("adapters.", "audio_projectors.", "video_projectors.")) for n in trainable)
    state = model.trainable_state_dict()
    assert set(state) == trainable
    other = _model("mome")
    other.load_trainable_state_dict(state)
    for k, v in other.trainable_state_dict().items():
        assert torch.equal(v, state[k])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_overfits_a_handful_of_pairs_at_every_granularity(kind: str) -> None:
    """Frozen random LLM + trainable projectors/adapters memorise 4 transcripts at all 4 granularities."""
    torch.manual_seed(0)
    model = _model(kind)
    features = _features(batch=4)
    steps = 400
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=2e-2, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        out = model(features, TEXTS)
        out.loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    for combo in model.combinations:  # zero token error: greedy decoding reproduces every transcript
        hyps = model.generate(features, combo, DecodeConfig(num_beams=1, max_new_tokens=30))
        assert hyps == TEXTS, (kind, combo, hyps, {k: round(v.item(), 4) for k, v in out.ce.items()})
    # Batched beam search (left padding) gives what each clip gets alone, and is deterministic.
    decode = DecodeConfig(num_beams=3, max_new_tokens=30)
    combo = model.combinations[-1]
    batched = model.generate(features, combo, decode)
    assert batched == model.generate(features, combo, decode)
    for b in range(features.batch_size):
        alone = Features(
            features.audio[b : b + 1, : int(features.audio_lengths[b])],
            features.audio_lengths[b : b + 1],
            features.video[b : b + 1, : int(features.video_lengths[b])],
            features.video_lengths[b : b + 1],
        )
        assert model.generate(alone, combo, decode) == [batched[b]]


def test_beam_search_hands_the_lm_head_a_contiguous_input_with_the_same_hypotheses() -> None:
    """`generate` passes the strided slice `hidden[:, -1:, :]` to the LM head (on CPU in bf16, F.linear on it
    allocates rows x vocabulary x hidden, and copies the weight even for one row, whose slice `is_contiguous()`
    calls contiguous); the model's pre-hook lays it out densely, and beams decode the same."""
    model = _model("mome").eval()
    given, received = [], []
    head = model.llm.get_output_embeddings()
    dense = lambda x: x.stride() == dense_strides(x.shape)  # noqa: E731
    head.register_forward_pre_hook(
        lambda m, args: given.append((dense(args[0]), args[0].is_contiguous())), prepend=True
    )
    head.register_forward_pre_hook(lambda m, args: received.append(dense(args[0])))
    combo = model.combinations[-1]
    model.generate_scored(_features(batch=1), combo, DecodeConfig(num_beams=1, max_new_tokens=3))
    assert (False, True) in given  # batch 1: "contiguous" by is_contiguous(), yet strided (else this proves nothing)
    given.clear()
    features, decode = _features(batch=2), DecodeConfig(num_beams=4, max_new_tokens=6)
    hooked = model.generate_scored(features, combo, decode)
    assert (False, False) in given  # what HF hands over with beams
    assert received and all(received)
    model.lm_head_hook.remove()  # the handle is kept: without the hook, the same transcripts and confidences
    plain = model.generate_scored(features, combo, decode)
    assert plain[0] == hooked[0] and plain[1] == pytest.approx(hooked[1], abs=1e-5)
