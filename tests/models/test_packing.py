"""Sequence packing: the packer's bins, the packed layout, and packed = padded = one forward per granularity
(hidden states, losses, router losses and gradients) on tiny random LLMs in fp32."""

from __future__ import annotations

import random

import pytest
import torch

from mome.adapters.context import Segment
from mome.config import combination_key
from mome.models import avsr
from mome.models.avsr import AVSRModel, Features
from mome.models.llm import training_attention
from mome.models.sequence import (
    IGNORE_INDEX,
    PACK_CAPACITY,
    SequenceBatch,
    first_fit_decreasing,
    pack,
    packing_capacity,
)
from tiny import TINY_LLAMA, TINY_QWEN2, tiny_model_config

TEXTS = ["place red at g nine", "bin blue", "set white with p one soon"]
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _features() -> Features:
    """One long clip and two short ones: the short clips' rows fit beside each other in one packed row."""
    lengths_v = torch.tensor([40, 6, 3])
    lengths_a = 2 * lengths_v  # 50 Hz audio, 25 Hz video
    return Features(torch.randn(3, 80, 12), lengths_a, torch.randn(3, 40, 10), lengths_v)


def _model(kind: str, arch: dict = TINY_LLAMA, **mome) -> AVSRModel:
    cfg = tiny_model_config(kind, arch, **mome)
    cfg.prompt = "T:"  # short rows (the tiny tokenizer has a token per character), so that rows pack
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10).train()
    with torch.no_grad():  # move adapters away from their zero start so that they matter
        for p in model.adapters.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _padded_and_packed(model: AVSRModel) -> tuple[SequenceBatch, SequenceBatch]:
    padded = model.build_sequences(_features(), model.combinations, TEXTS, padding_side="right")
    return padded, pack(padded)


# ------------------------------------------------------------------------------------------ the packer
def test_first_fit_decreasing_on_a_hand_made_example() -> None:
    # longest first: 8 fills bin 0; 6 opens bin 1; 5 opens bin 2; 4 opens bin 3; 3 joins 5; 2 joins 6
    assert first_fit_decreasing([5, 3, 8, 2, 4, 6], capacity=8) == [[2], [5, 3], [0, 1], [4]]
    assert first_fit_decreasing([4, 4, 4], capacity=4) == [[0], [1], [2]]
    with pytest.raises(ValueError, match="does not fit"):
        first_fit_decreasing([3, 9], capacity=8)


def test_bins_never_overflow_and_hold_every_row_once() -> None:
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 50) for _ in range(rng.randint(1, 40))]
        capacity = max(lengths) + rng.randint(0, 10)
        bins = first_fit_decreasing(lengths, capacity)
        assert sorted(r for b in bins for r in b) == list(range(len(lengths)))
        assert all(sum(lengths[r] for r in b) <= capacity for b in bins)
        assert len(bins) <= len(lengths)


def test_packed_layout_of_the_training_rows() -> None:
    model = _model("none")
    padded, packed = _padded_and_packed(model)
    lengths = padded.attention_mask.sum(1)  # [R]
    num_rows = padded.attention_mask.shape[0]
    width = packed.embeds.shape[1]
    assert int(lengths.max()) <= width <= PACK_CAPACITY * int(lengths.max())  # attention grows by the capacity
    assert packed.embeds.shape[0] < num_rows  # rows of different lengths: fewer positions than padded
    assert (packed.attention_mask == (packed.source_rows >= 0)).all()
    for r in range(num_rows):  # every original row exactly once, whole, in order, with positions 0..n-1
        where = (packed.source_rows == r).nonzero()
        (p,) = where[:, 0].unique().tolist()
        span = where[:, 1]
        n = int(lengths[r])
        assert span.tolist() == list(range(int(span[0]), int(span[0]) + n))
        assert packed.position_ids[p, span].tolist() == list(range(n))
        torch.testing.assert_close(packed.embeds[p, span], padded.embeds[r, :n], rtol=0, atol=0)
        assert torch.equal(packed.labels[p, span], padded.labels[r, :n])
        assert torch.equal(packed.segments[p, span], padded.segments[r, :n])
    pad = packed.source_rows < 0
    assert (packed.labels[pad] == IGNORE_INDEX).all() and (packed.segments[pad] == Segment.PAD).all()
    for p in range(packed.embeds.shape[0]):  # padding only at the end, with positions of its own from 0
        k = int(pad[p].sum())
        assert not pad[p, : width - k].any()
        assert packed.position_ids[p, width - k :].tolist() == list(range(k))


def _hand_made() -> SequenceBatch:
    """Rows of 4, 2, 3 and 1 real tokens in width 4."""
    lengths = [4, 2, 3, 1]
    mask = torch.tensor([[1] * n + [0] * (4 - n) for n in lengths])
    labels = torch.where(mask.bool(), torch.arange(4) + 10, IGNORE_INDEX)
    labels[:, 0] = IGNORE_INDEX
    return SequenceBatch(torch.randn(4, 4, 2), mask, labels, mask * int(Segment.TEXT))


def test_a_hand_made_batch_packs_as_expected() -> None:
    """Capacity 1 (the longest row): [row 0], [row 2, row 3], [row 1, padding x 2]."""
    packed = pack(_hand_made(), capacity=1.0)
    assert packed.source_rows.tolist() == [[0, 0, 0, 0], [2, 2, 2, 3], [1, 1, -1, -1]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 1]]
    assert packed.labels.tolist() == [[-100, 11, 12, 13], [-100, 11, 12, -100], [-100, 11, -100, -100]]
    assert packed.embeds[2, 2:].abs().sum() == 0


def test_a_larger_capacity_leaves_no_padding_here() -> None:
    """Capacity 2 (8 positions): [row 0, row 2, row 3], [row 1]; the rows are as long as their longest bin."""
    packed = pack(_hand_made(), capacity=2.0)
    assert packed.source_rows.tolist() == [[0, 0, 0, 0, 2, 2, 2, 3], [1, 1, -1, -1, -1, -1, -1, -1]]
    assert packed.position_ids[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    assert pack(_hand_made(), capacity=100.0).embeds.shape[:2] == (1, 10)  # never longer than all rows together


def test_capacity_none_packs_every_row_into_one_row_without_padding() -> None:
    """Flash attention's layout: longest first, all in one row of 4 + 3 + 2 + 1 positions."""
    packed = pack(_hand_made(), capacity=None)
    assert packed.source_rows.tolist() == [[0, 0, 0, 0, 2, 2, 2, 1, 1, 3]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 0]]
    assert packed.attention_mask.all()


def test_no_label_crosses_from_one_row_into_the_next() -> None:
    for arch in (TINY_LLAMA, TINY_QWEN2):  # with BOS and without (Qwen2 rows start with <audio>)
        _, packed = _padded_and_packed(_model("none", arch))
        learned = packed.labels[:, 1:] != IGNORE_INDEX  # position t predicts labels[t + 1]
        same_row = packed.source_rows[:, :-1] == packed.source_rows[:, 1:]
        assert learned.any() and (same_row | ~learned).all()
    seq = SequenceBatch(torch.randn(1, 3, 2), torch.ones(1, 3), torch.tensor([[5, 6, 7]]), torch.ones(1, 3))
    with pytest.raises(ValueError, match="starts with a labelled token"):
        pack(seq)


# ------------------------------------------------------------------------------------------ equality
def _unpack(hidden: torch.Tensor, packed: SequenceBatch, width: int) -> torch.Tensor:
    """Packed hidden states [P, L, D] back into right-padded rows [R, width, D] (zeros on padding)."""
    real = packed.source_rows >= 0
    rows = int(packed.source_rows.max()) + 1
    out = hidden.new_zeros(rows, width, hidden.shape[-1])
    out[packed.source_rows[real], packed.position_ids[real]] = hidden[real]
    return out


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", [TINY_LLAMA, TINY_QWEN2], ids=["llama", "qwen2"])
def test_packed_hidden_states_equal_the_padded_ones(arch: dict, attention: str) -> None:
    """HF builds a block-diagonal causal mask from the restarting position ids: no token sees another row."""
    model = _model("mome", arch, shared_router=False)
    model.llm.config._attn_implementation = attention
    padded, packed = _padded_and_packed(model)
    with torch.no_grad():
        want = model.last_hidden(padded) * padded.attention_mask.unsqueeze(-1)
        got = _unpack(model.last_hidden(packed), packed, padded.embeds.shape[1])
    torch.testing.assert_close(got, want, **TOLERANCE)


def _step(model: AVSRModel, outputs: list) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(loss terms, gradient of every trainable parameter) of a step made of (output, weight) pairs, each
    back-propagated as weight * loss; a granularity's CE comes from one output only."""
    model.zero_grad(set_to_none=True)
    terms: dict[str, torch.Tensor] = {}
    for out, weight in outputs:
        (out.loss * weight).backward()
        for key, value in {"loss": out.loss, "lm_loss": out.lm_loss, **out.ce, **out.aux}.items():
            share = 1.0 if key in out.ce else weight
            terms[key] = terms.get(key, 0.0) + share * value.detach()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return terms, grads


def _runs(model: AVSRModel, features: Features) -> dict[str, list]:
    """The three ways to compute a step: padded rows, packed rows, and `train.granularity_loop` (one packed
    forward per granularity, each back-propagated as loss / C)."""
    n = len(model.combinations)
    return {
        "padded": lambda: [(model(features, TEXTS, packed=False), 1.0)],
        "packed": lambda: [(model(features, TEXTS), 1.0)],
        "looped": lambda: [(model(features, TEXTS, [c], packed=True), 1.0 / n) for c in model.combinations],
    }


KINDS = [("mome", {}), ("mome", {"shared_router": False}), ("mtsk-ss", {}), ("mtsk-mss", {}), ("none", {})]


@pytest.mark.parametrize(("kind", "mome"), KINDS, ids=["mome", "mome-routers", "mtsk-ss", "mtsk-mss", "none"])
def test_packed_losses_and_gradients_equal_padded_and_looped(kind: str, mome: dict) -> None:
    model = _model(kind, **mome)
    results = {name: _step(model, run()) for name, run in _runs(model, _features()).items()}
    want_terms, want_grads = results.pop("padded")
    keys = {"loss", "lm_loss", *(combination_key(c) for c in model.combinations)}
    if kind == "mome":
        keys |= {"load_balance", "z_loss"}
    assert set(want_terms) == keys
    assert len(want_grads) == len(model.trainable_parameters())  # every trainable tensor got a gradient
    for name, (terms, grads) in results.items():
        assert set(terms) == keys and set(grads) == set(want_grads), name
        for key, value in want_terms.items():
            torch.testing.assert_close(terms[key], value, **TOLERANCE, msg=lambda m, k=key: f"{name} {k}: {m}")
        for key, value in want_grads.items():
            torch.testing.assert_close(grads[key], value, **TOLERANCE, msg=lambda m, k=key: f"{name} grad {k}: {m}")


def test_packing_saves_positions_on_rows_of_different_lengths() -> None:
    padded, packed = _padded_and_packed(_model("none"))
    assert packed.attention_mask.sum() == padded.attention_mask.sum()  # the same real tokens
    assert packed.attention_mask.numel() < padded.attention_mask.numel()
    assert (1 - packed.attention_mask).sum() < (1 - padded.attention_mask).sum()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_one_packed_row_gives_the_padded_hidden_states(attention: str) -> None:
    """The one-row layout flash attention reads (`capacity=None`), checked where it runs on a CPU: HF masks a
    one-row batch block-diagonally from its position ids as flash attention's variable-length kernel does."""
    model = _model("mome", shared_router=False)
    model.llm.config._attn_implementation = attention
    padded = _padded_and_packed(model)[0]
    flat = pack(padded, capacity=None)
    assert flat.embeds.shape[0] == 1
    with torch.no_grad():
        want = model.last_hidden(padded) * padded.attention_mask.unsqueeze(-1)
        got = _unpack(model.last_hidden(flat), flat, padded.embeds.shape[1])
    torch.testing.assert_close(got, want, **TOLERANCE)


def test_one_row_losses_and_gradients_equal_padded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step packed as flash attention packs it (one row) trains as the padded step does."""
    model, features = _model("mome"), _features()
    want_terms, want_grads = _step(model, [(model(features, TEXTS, packed=False), 1.0)])
    monkeypatch.setattr(avsr, "packing_capacity", lambda attention: None)  # flash's layout, computed by sdpa
    terms, grads = _step(model, [(model(features, TEXTS), 1.0)])
    assert set(terms) == set(want_terms) and set(grads) == set(want_grads)
    for key, value in want_terms.items():
        torch.testing.assert_close(terms[key], value, **TOLERANCE)
    for key, value in want_grads.items():
        torch.testing.assert_close(grads[key], value, **TOLERANCE)


def test_packing_capacity_by_attention() -> None:
    assert packing_capacity("sdpa") == packing_capacity("eager") == PACK_CAPACITY
    assert packing_capacity("flash_attention_2") is None and packing_capacity("kernels-community/flash-attn") is None
    with pytest.raises(ValueError, match="pack_sequences=false"):
        packing_capacity("flex_attention")


def test_packed_rows_refuse_an_attention_that_would_ignore_the_packing() -> None:
    model = _model("none")
    model.llm.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="pack_sequences=false"):
        model(_features(), TEXTS)
    model.llm.config._attn_implementation = "flash_attention_2"  # reads packing from a one-row batch only
    with pytest.raises(ValueError, match="one-row batch"):
        model.last_hidden(_padded_and_packed(model)[1])


def test_training_attention_by_precision_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from mome.models import llm

    assert training_attention("bf16", "cpu") == "eager" and training_attention("fp32", "cpu") is None
    monkeypatch.setattr(llm, "is_flash_attn_2_available", lambda: True)
    assert training_attention("bf16", "cuda") == training_attention("fp16", "cuda") == "flash_attention_2"
    assert training_attention("fp32", "cuda") is None  # flash attention computes in half precision only
    monkeypatch.setattr(llm, "is_flash_attn_2_available", lambda: False)
    assert training_attention("bf16", "cuda") is None
