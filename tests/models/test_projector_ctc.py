"""`projector.ctc_weight`: an auxiliary CTC loss that pulls each projector's tokens towards the LLM's own
embeddings of the words they carry. Off, the model and its checkpoints are the paper's; on, the term is
CTC over the batch's transcript tokens, the same batched or one granularity at a time."""

from __future__ import annotations

import torch

from mome.models.avsr import AVSRModel, Features
from mome.models.losses import projector_ctc
from tiny import tiny_model_config

TEXTS = ["red g nine", "bin a two"]  # the tiny tokenizer spells: one token per character


def _model(weight: float) -> AVSRModel:
    torch.manual_seed(0)
    cfg = tiny_model_config("mome")
    cfg.projector.ctc_weight = weight
    return AVSRModel.from_config(cfg, audio_dim=12, video_dim=10).eval()


def _features() -> Features:
    torch.manual_seed(1)
    lengths_v = torch.tensor([48, 40])
    return Features(torch.randn(2, 96, 12), 2 * lengths_v, torch.randn(2, 48, 10), lengths_v)


def test_tokens_shaped_like_the_words_embeddings_score_better_than_random_ones() -> None:
    torch.manual_seed(0)
    embeddings = torch.randn(50, 16)
    blank = torch.randn(16)
    targets = [[3, 7, 7, 9], [9, 4]]
    # blank, word, blank, word ...: the alignment CTC wants, made of the words' own embedding vectors
    aligned = torch.stack(
        [torch.stack([v for i in t for v in (blank, embeddings[i])] + [blank] * (10 - 2 * len(t))) for t in targets]
    )
    lengths = torch.tensor([10, 10])
    good = projector_ctc(aligned, lengths, targets, embeddings, blank)
    bad = projector_ctc(torch.randn(2, 10, 16), lengths, targets, embeddings, blank)
    assert good < 0.5 < bad
    # a word the sample does not say, in place of one it says, costs: the scores see which word it is
    swapped = aligned.clone()
    swapped[0, 1] = embeddings[4]
    assert projector_ctc(swapped, lengths, targets, embeddings, blank) > good + 1


def test_a_rate_too_coarse_for_its_transcript_adds_nothing() -> None:
    embeddings, blank = torch.randn(20, 8), torch.randn(8, requires_grad=True)
    tokens = torch.randn(1, 2, 8, requires_grad=True)
    loss = projector_ctc(tokens, torch.tensor([2]), [[1, 2, 3]], embeddings, blank)  # 3 words in 2 tokens
    loss.backward()
    assert loss.item() == 0 and tokens.grad.abs().sum() == 0


def test_off_the_model_and_its_weights_are_the_papers() -> None:
    model = _model(0.0)
    assert "ctc" not in model(_features(), TEXTS).aux
    assert not any("ctc" in name for name in model.trainable_state_dict())


def test_on_the_loss_adds_the_weighted_term_and_its_gradient_reaches_projectors_and_blanks() -> None:
    off, on = _model(0.0), _model(0.5)
    on.load_state_dict(off.state_dict(), strict=False)  # the same projectors and adapters; `on` adds blanks
    features = _features()
    out_off, out_on = off(features, TEXTS), on(features, TEXTS)
    torch.testing.assert_close(out_on.lm_loss, out_off.lm_loss)
    torch.testing.assert_close(out_on.loss, out_off.loss + 0.5 * out_on.aux["ctc"])
    assert out_on.aux["ctc"] > 0
    out_on.aux["ctc"].backward()
    for module, finest in ((on.audio_projectors, "r4"), (on.video_projectors, "r2")):
        assert module.ctc_blank.grad.abs().sum() > 0
        assert all(p.grad.abs().sum() > 0 for p in module.layers[finest].parameters())
    assert on.llm.get_input_embeddings().weight.grad is None  # the LLM stays frozen
    assert {n for n in on.trainable_state_dict() if "ctc" in n} == {
        "audio_projectors.ctc_blank",
        "video_projectors.ctc_blank",
    }


def test_one_granularity_at_a_time_sums_to_the_batched_term() -> None:
    model = _model(1.0)
    features = _features()
    batched = model(features, TEXTS).aux["ctc"]
    looped = torch.stack([model(features, TEXTS, [c]).aux["ctc"] for c in model.combinations]).mean()
    torch.testing.assert_close(looped, batched)
