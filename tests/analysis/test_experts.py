"""Expert usage (`mome experts`): routing read back token by token, the consistency score against its
chance baseline, and the command end to end."""

from __future__ import annotations

import json

import pytest
import torch

from mome.adapters.context import Segment
from mome.analysis.experts import Routing, analyse, collect, consistency, route_batch, usage
from mome.cli import main
from mome.models.avsr import AVSRModel, Features
from mome.models.pooling import pooled_lengths
from mome.synthetic.corpus import synthesize_corpus
from tiny import TINY_CORPUS, tiny_model_config, untrained_run

EXPERTS, K = 8, 2
RATES = (4, 16)  # audio rates of granularity 0 and 1: tokens of 0.08 s and 0.32 s


def _audio_routing(sets_for) -> Routing:
    """Audio tokens of 3 utterances of 1.28 s at two rates; `sets_for(utterance, start_s, rate)` -> top-k."""
    topk, combination, utterance, start, end = [], [], [], [], []
    for u in range(3):
        for c, rate in enumerate(RATES):
            span = rate / 50
            for i in range(int(1.28 / span)):
                topk.append(sets_for(u, i * span, rate))
                combination.append(c)
                utterance.append(u)
                start.append(i * span)
                end.append((i + 1) * span)
    n = len(topk)
    return Routing(0, torch.tensor(topk), torch.tensor(combination), torch.full((n,), int(Segment.AUDIO)),
                   torch.tensor(utterance), torch.tensor(start), torch.tensor(end))  # fmt: skip


def test_consistency_is_one_when_the_same_speech_gets_the_same_experts() -> None:
    # The experts depend on the utterance and the 0.32 s stretch of speech only, whatever the rate.
    def same(u: int, start: float, rate: int) -> list[int]:
        bucket = int(start / 0.32 + 1e-6)
        first = (3 * u + 2 * bucket) % EXPERTS
        return [first, (first + 1) % EXPERTS]

    score, chance = consistency(_audio_routing(same), 0, 1, Segment.AUDIO, EXPERTS)
    assert score == pytest.approx(1.0)
    assert chance < 0.5  # shuffled sets rarely match


def test_consistency_of_random_routing_is_near_chance() -> None:
    generator = torch.Generator().manual_seed(0)

    def random(u: int, start: float, rate: int) -> list[int]:
        return torch.randperm(EXPERTS, generator=generator)[:K].tolist()

    score, chance = consistency(_audio_routing(random), 0, 1, Segment.AUDIO, EXPERTS)
    expected = (K * K / EXPERTS) / (2 * K - K * K / EXPERTS)  # Jaccard of two random 2-of-8 sets, roughly
    assert abs(score - chance) < 0.08 and abs(chance - expected) < 0.08, (score, chance, expected)


def test_no_overlapping_tokens_gives_nan() -> None:
    routing = _audio_routing(lambda u, s, r: [0, 1])
    score, chance = consistency(routing, 0, 1, Segment.VIDEO, EXPERTS)  # no video tokens at all
    assert score != score and chance != chance


def _model() -> AVSRModel:
    cfg = tiny_model_config("mome", num_routed_experts=EXPERTS, top_k=K)
    cfg.prompt = "T:"
    return AVSRModel.from_config(cfg, audio_dim=12, video_dim=10).eval()


def test_route_batch_reads_back_every_real_token_with_its_time_span() -> None:
    model = _model()
    lengths_v = torch.tensor([20, 9])
    features = Features(torch.randn(2, 40, 12), 2 * lengths_v, torch.randn(2, 20, 10), lengths_v)
    texts = ["bin blue", "set red now"]
    routings = route_batch(model, features, texts, model.combinations, 5, (50.0, 25.0))
    assert [r.layer for r in routings] == list(range(model.llm.config.num_hidden_layers))
    seq = model.build_sequences(features, model.combinations, texts, padding_side="right")
    r = routings[0]
    assert len(r.topk) == int(seq.attention_mask.sum()) and r.topk.shape[1] == K
    for c, (a_rate, v_rate) in enumerate(model.combinations):
        for b, utt in enumerate((5, 6)):
            audio = (r.combination == c) & (r.utterance == utt) & (r.segment == Segment.AUDIO)
            video = (r.combination == c) & (r.utterance == utt) & (r.segment == Segment.VIDEO)
            n_audio = int(pooled_lengths(2 * lengths_v[b : b + 1], a_rate))
            assert int(audio.sum()) == n_audio and int(video.sum()) == int(pooled_lengths(lengths_v[b : b + 1], v_rate))
            torch.testing.assert_close(r.start[audio], torch.arange(n_audio) * a_rate / 50.0)
            torch.testing.assert_close(r.end[video] - r.start[video], torch.full((int(video.sum()),), v_rate / 25.0))
    text = r.segment == Segment.TEXT
    assert text.any() and r.start[text].isnan().all()
    shares = usage(r, EXPERTS, len(model.combinations))  # [C, kinds, E]: each row sums to k
    torch.testing.assert_close(shares.nansum(-1)[~shares.isnan().all(-1)], torch.full((12,), float(K)))


def test_analyse_reports_every_layer_and_pair() -> None:
    model = _model()
    lengths_v = torch.tensor([20, 12])
    features = Features(torch.randn(2, 40, 12), 2 * lengths_v, torch.randn(2, 20, 10), lengths_v)
    routings = collect(model, [(features, ["bin blue", "set red"])] * 2, model.combinations, (50.0, 25.0))
    result = analyse(routings, model.combinations, EXPERTS)
    assert len(result["layers"]) == model.llm.config.num_hidden_layers
    pairs = result["layers"][0]["consistency"]
    assert {(p["first"], p["second"], p["modality"]) for p in pairs} >= {("a4_v2", "a16_v2", "audio"),
                                                                          ("a4_v2", "a4_v5", "video")}  # fmt: skip
    assert ("a4_v2", "a4_v5", "audio") not in {(p["first"], p["second"], p["modality"]) for p in pairs}  # same rate
    assert all(0 <= p["score"] <= 1 and 0 <= p["chance"] <= 1 for p in pairs)
    assert set(result["consistency_mean"]) == {"audio", "video"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(corpus root, run directory) of an untrained tiny MoME checkpoint."""
    root = tmp_path_factory.mktemp("corpus")
    assert synthesize_corpus(root, 8, seed=5, **TINY_CORPUS)["written"] == 8
    return root, untrained_run(root, tmp_path_factory.mktemp("run"))


def test_experts_command_writes_json_markdown_and_heatmaps(run, capsys) -> None:
    _, run_dir = run
    assert main(["experts", str(run_dir), "--labels", "labels/test.csv", "--quiet", "data.num_workers=0"]) == 0
    out = run_dir / "experts" / "test"
    result = json.loads((out / "experts.json").read_text())
    layers = [layer["layer"] for layer in result["layers"]]
    assert layers and all((out / f"layer_{i}.png").read_bytes()[:4] == b"\x89PNG" for i in layers)
    assert "consistency" in (out / "experts.md").read_text()
    assert "across granularities (chance" in capsys.readouterr().out


def test_experts_refuses_a_model_without_router(run, tmp_path, capsys) -> None:
    root, _ = run
    untrained_run(root, tmp_path, ["model.adapter.kind=mtsk-ms"])
    assert main(["experts", str(tmp_path), "--labels", "labels/test.csv", "--quiet"]) == 2
    assert "has no router" in capsys.readouterr().err
