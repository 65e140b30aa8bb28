"""A unified (`task: any`) model: audio-only and video-only granularities join the AVSR ones, each training
sample gets the rows of its own task, and the loss is the Matryoshka mean over the granularities present."""

from __future__ import annotations

import pytest
import torch

from mome.adapters.context import Segment
from mome.config import ConfigError, DecodeConfig, combination_key, combinations, load_config, parse_combination
from mome.models.avsr import AVSRModel, Features
from tiny import tiny_model_config

TEXTS = ["place red at g nine", "bin blue by a two", "set white with p one"]


def _features(batch: int = 3) -> Features:
    lengths_v = torch.tensor([24, 17, 9][:batch])
    lengths_a = 2 * lengths_v
    return Features(torch.randn(batch, 48, 12), lengths_a, torch.randn(batch, 24, 10), lengths_v)


def _unified(kind: str = "mome") -> AVSRModel:
    cfg = tiny_model_config(kind)
    cfg.compression.task = "any"
    return AVSRModel.from_config(cfg, audio_dim=12, video_dim=10)


def test_any_adds_the_single_modality_granularities() -> None:
    comp = tiny_model_config().compression
    comp.task = "any"
    keys = [combination_key(c) for c in combinations(comp)]
    assert keys == ["a4_v2", "a4_v5", "a16_v2", "a16_v5", "a4", "a16", "v2", "v5"]
    assert parse_combination("a16", comp) == (16, None) and parse_combination("v5", comp) == (None, 5)
    assert parse_combination("16,5", comp) == (16, 5)
    with pytest.raises(ConfigError, match="not a trained combination"):
        parse_combination("8,2", comp)


@pytest.mark.parametrize("kind", ["mome", "mtsk-ms"])
def test_each_sample_trains_on_the_granularities_of_its_task(kind: str) -> None:
    torch.manual_seed(0)
    model = _unified(kind).eval()  # no dropout: the same numbers in every forward
    features = _features()
    out = model(features, TEXTS, tasks=["avsr", "asr", "vsr"])
    counts = dict(zip([combination_key(c) for c in model.combinations], out.ce_counts.tolist()))
    assert all(counts[k] > 0 for k in counts)
    # each granularity's CE is that of its own sample alone: sample 0 for AVSR, 1 for audio, 2 for video
    for b, keys in ((0, ["a4_v2", "a16_v5"]), (1, ["a4", "a16"]), (2, ["v2", "v5"])):
        one = Features(
            features.audio[b : b + 1],
            features.audio_lengths[b : b + 1],
            features.video[b : b + 1],
            features.video_lengths[b : b + 1],
        )
        for key in keys:
            combo = parse_combination(key, model.cfg.compression)
            alone = model(one, TEXTS[b : b + 1], [combo])
            torch.testing.assert_close(out.ce[key], alone.ce[key], rtol=1e-4, atol=1e-5)
    # the Matryoshka mean runs over the granularities that have rows
    only_audio = model(features, TEXTS, tasks=["asr", "asr", "asr"])
    assert [k for k, n in zip(only_audio.ce, only_audio.ce_counts.tolist()) if n > 0] == ["a4", "a16"]
    torch.testing.assert_close(only_audio.lm_loss, (only_audio.ce["a4"] + only_audio.ce["a16"]) / 2)
    # a video-only row has no audio block, an audio-only row no video block
    for combo, absent, present in (
        ((None, 5), Segment.AUDIO, Segment.VIDEO),
        ((16, None), Segment.VIDEO, Segment.AUDIO),
    ):
        seq = model.build_sequences(features, [combo], TEXTS, "right")
        assert int((seq.segments == absent).sum()) == 0 and int((seq.segments == present).sum()) > 0


def test_a_unified_model_decodes_every_task() -> None:
    torch.manual_seed(0)
    model = _unified().eval()
    decode = DecodeConfig(num_beams=1, max_new_tokens=3)
    for combo in model.combinations:
        assert len(model.generate(_features(2), combo, decode)) == 2


def test_task_mix_is_checked() -> None:
    with pytest.raises(ConfigError, match="needs model.compression.task=any"):
        load_config("tiny", ["train.task_mix={asr: 1.0}"])
    with pytest.raises(ConfigError, match="keys must be among"):
        load_config("tiny", ["model.compression.task=any", "train.task_mix={speech: 1.0}"])
    cfg = load_config("tiny", ["model.compression.task=any", "train.task_mix={avsr: 2, asr: 1, vsr: 1}"])
    assert cfg.task_mix == {"asr": 0.25, "avsr": 0.5, "vsr": 0.25}


def test_the_confidence_is_the_mean_log_probability_of_the_greedy_tokens() -> None:
    """An independent greedy loop (full forward at every step, no cache) gives the same tokens' mean
    log-probability, up to and including EOS, as `generate_scored`."""
    from mome.adapters.context import AdapterContext, adapter_context

    torch.manual_seed(0)
    model = _unified().eval()
    features, combo, steps = _features(2), (16, 5), 6
    texts, confidences = model.generate_scored(features, combo, DecodeConfig(num_beams=1, max_new_tokens=steps))
    seq = model.build_sequences(features, [combo], None, "left")
    embed = model.llm.get_input_embeddings()
    for b in range(2):
        row = seq.embeds[b : b + 1, seq.attention_mask[b].bool()]  # [1, L_b, D] without the left padding
        logprobs = []
        with torch.no_grad(), adapter_context(AdapterContext(model.combinations.index(combo), collect=False)):
            for _ in range(steps):
                logits = model.llm(inputs_embeds=row).logits[0, -1].float()
                token = int(logits.argmax())
                logprobs.append(float(torch.log_softmax(logits, -1)[token]))
                if token == model.builder.eos:
                    break
                row = torch.cat([row, embed(torch.tensor([[token]]))], dim=1)
        assert confidences[b] == pytest.approx(sum(logprobs) / len(logprobs), abs=1e-4), b


def test_beam_search_scores_its_beams_like_greedy_scores_its_tokens() -> None:
    """The teacher-forced log-probabilities (beam search's confidence) of greedy's own output equal the ones
    greedy recorded while decoding, for rows of different lengths (left padding)."""
    from mome.adapters.context import AdapterContext, adapter_context

    torch.manual_seed(0)
    model = _unified().eval()
    features, combo = _features(3), (4, 2)
    decode = DecodeConfig(num_beams=1, max_new_tokens=5)
    _, greedy = model.generate_scored(features, combo, decode)
    seq = model.build_sequences(features, [combo], None, "left")
    with torch.no_grad(), adapter_context(AdapterContext(model.combinations.index(combo), collect=False)):
        out = model.llm.generate(
            inputs_embeds=seq.embeds,
            attention_mask=seq.attention_mask,
            max_new_tokens=5,
            do_sample=False,
            eos_token_id=model.builder.eos,
            pad_token_id=model.builder.pad,
        )
        forced = model._teacher_forced(seq, out)
    keep = model._up_to_eos(out)
    assert ((forced * keep).sum(1) / keep.sum(1)).tolist() == pytest.approx(greedy, abs=1e-4)
    _, beams = model.generate_scored(features, combo, DecodeConfig(num_beams=3, max_new_tokens=5))
    assert all(b <= 0 for b in beams) and len(beams) == 3


def _clips(count: int) -> list[Features]:
    """Features of `count` clips of different lengths, each a batch of one (as `mome.inference.api` encodes them)."""
    out = []
    for i in range(count):
        frames = 6 + 5 * i
        out.append(
            Features(
                torch.randn(1, 2 * frames, 12),
                torch.tensor([2 * frames]),
                torch.randn(1, frames, 10),
                torch.tensor([frames]),
            )
        )
    return out


@pytest.mark.parametrize(
    ("kind", "mome", "beams"),
    [("mome", {"shared_router": False}, 1), ("mome", {}, 3), ("mtsk-mss", {}, 1), ("mtsk-mss", {}, 3)],
)
def test_rows_of_other_clips_and_rates_decode_as_each_alone(kind: str, mome: dict, beams: int) -> None:
    """`generate_rows` (clips and combinations side by side, left-padded, one generate call) gives each row the
    text of its clip decoded alone at its combination, and the confidence up to float rounding: padding
    changes the shapes of the attention sums. Per-combination routers and LoRAs see each row's own."""
    torch.manual_seed(0)
    cfg = tiny_model_config(kind, **mome)
    cfg.compression.task = "any"
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10).eval()
    with torch.no_grad():  # adapters start as a zero update: make each combination's own weights matter
        for p in model.adapters.parameters():
            p.normal_(0.0, 0.5)
    clips, decode = _clips(4), DecodeConfig(num_beams=beams, max_new_tokens=6)
    rows = [(clips[i % 4], combo) for i, combo in enumerate(model.combinations)]  # every task, mixed lengths
    alone = [model.generate_scored(f, combo, decode) for f, combo in rows]
    calls = []
    generate = model.llm.generate
    model.llm.generate = lambda *a, **k: calls.append(1) or generate(*a, **k)
    texts, confidences = model.generate_rows(rows, decode)
    assert len(calls) == 1
    assert texts == [t for (t,), _ in alone]
    assert len(set(texts)) > 2, "a near-constant output would prove nothing"
    assert confidences == pytest.approx([c for _, (c,) in alone], abs=1e-4)
