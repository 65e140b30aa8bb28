"""Expert usage (`mome experts`): routing read back token by token, the consistency score against its
chance baseline, and the command end to end."""

from __future__ import annotations

import json

import pytest
import torch

from mome.adapters.context import Segment
from mome.analysis.experts import (
    PERMUTATIONS,
    Routing,
    analyse,
    collect,
    consistency,
    route_batch,
    usage,
)
from mome.cli import main
from mome.config import load_config
from mome.models.avsr import AVSRModel, Features, build_model
from mome.models.pooling import pooled_lengths
from mome.runs.checkpoint import save_checkpoint
from mome.synthetic.corpus import synthesize_corpus
from mome.workflows import pipeline
from mome.workflows.pipeline import Workspace
from tiny import TINY_CORPUS, tiny_model_config, untrained_run

EXPERTS, K = 8, 2
RATES = (4, 16)  # audio rates of granularity 0 and 1: tokens of 0.08 s and 0.32 s


def _audio_routing(sets_for, utterances: int = 3) -> Routing:
    """Audio tokens of utterances of 1.28 s at two rates; `sets_for(utterance, start_s, rate)` -> top-k."""
    topk, combination, utterance, start, end = [], [], [], [], []
    for u in range(utterances):
        for c, rate in enumerate(RATES):
            span = rate / 50
            for i in range(int(1.28 / span)):
                topk.append(sets_for(u, i * span, rate))
                combination.append(c)
                utterance.append(u)
                start.append(i * span)
                end.append((i + 1) * span)
    n = len(topk)
    return Routing(
        0,
        torch.tensor(topk),
        torch.tensor(combination),
        torch.full((n,), int(Segment.AUDIO)),
        torch.tensor(utterance),
        torch.tensor(start),
        torch.tensor(end),
    )


def _summary(routing: Routing, permutations: int = 200, seed: int = 0) -> dict:
    (sums,) = consistency([routing], 0, 1, Segment.AUDIO, EXPERTS, permutations, seed)
    return {**sums.summary(), "across": sums.summary()["chance_across_utterances"], "null": sums.null}


def _time_aligned(u: int, start: float, rate: int) -> list[int]:
    """The experts depend on the utterance and the 0.32 s stretch of speech only, whatever the rate."""
    bucket = int(start / 0.32 + 1e-6)
    first = (3 * u + 2 * bucket) % EXPERTS
    return [first, (first + 1) % EXPERTS]


def test_consistency_is_one_and_beats_every_shuffle_when_the_same_speech_gets_the_same_experts() -> None:
    result = _summary(_audio_routing(_time_aligned))
    assert result["score"] == pytest.approx(1.0)
    assert result["chance"] < 0.5  # sets moved in time rarely match
    assert result["p_value"] == pytest.approx(1 / 201) and result["p_value"] < 0.01


def test_routing_that_follows_only_the_utterance_is_at_chance_within_utterances_not_across() -> None:
    # each utterance (a speaker, say) prefers 3 of the 8 experts; which 2 a token takes has nothing to do with time
    generator = torch.Generator().manual_seed(0)

    def utterance_only(u: int, start: float, rate: int) -> list[int]:
        pool = [(3 * u + e) % EXPERTS for e in range(3)]
        return [pool[e] for e in torch.randperm(3, generator=generator)[:K].tolist()]

    result = _summary(_audio_routing(utterance_only, utterances=12))
    assert abs(result["excess"]) < 0.03 and result["p_value"] > 0.2, result
    assert result["score"] - result["across"] > 0.2, result  # the shuffle across utterances calls it consistent
    constant = _summary(_audio_routing(lambda u, s, r: [u % EXPERTS, (u + 1) % EXPERTS]))  # one set per utterance
    assert constant["excess"] == pytest.approx(0.0, abs=1e-12) and constant["p_value"] == 1.0, constant


def test_time_aligned_routing_beats_the_within_utterance_shuffle_also_when_utterances_differ() -> None:
    generator = torch.Generator().manual_seed(1)

    def noisy(u: int, start: float, rate: int) -> list[int]:  # the aligned sets, with a quarter replaced at random
        if torch.rand(1, generator=generator).item() < 0.25:
            return torch.randperm(EXPERTS, generator=generator)[:K].tolist()
        return _time_aligned(u, start, rate)

    result = _summary(_audio_routing(noisy, utterances=6))
    assert result["excess"] > 0.2 and result["p_value"] < 0.01, result


def test_consistency_of_random_routing_is_near_chance() -> None:
    generator = torch.Generator().manual_seed(0)

    def random(u: int, start: float, rate: int) -> list[int]:
        return torch.randperm(EXPERTS, generator=generator)[:K].tolist()

    result = _summary(_audio_routing(random))
    expected = (K * K / EXPERTS) / (2 * K - K * K / EXPERTS)  # Jaccard of two random 2-of-8 sets, roughly
    assert abs(result["excess"]) < 0.08 and abs(result["chance"] - expected) < 0.08, (result, expected)


def test_shuffles_move_sets_in_time_only_and_are_seeded() -> None:
    # one set per utterance for its audio tokens, random sets for tokens of another kind in between: a shuffle
    # that crossed an utterance or a kind would change the score, one within them cannot
    routing = _audio_routing(lambda u, s, r: [u % EXPERTS, (u + 1) % EXPERTS], utterances=4)
    text = torch.arange(len(routing.topk)) % 3 == 0
    routing.segment[text] = int(Segment.TEXT)
    routing.topk[text] = torch.randperm(EXPERTS)[:K].repeat(int(text.sum()), 1)
    result = _summary(routing)
    assert (result["null"] == result["null"][0]).all()  # every shuffle scores the same ...
    assert result["p_value"] == 1.0 and result["excess"] == pytest.approx(0.0, abs=1e-12)  # ... as the routing
    noisy = _audio_routing(lambda u, s, r: torch.randperm(EXPERTS)[:K].tolist())
    assert torch.equal(_summary(noisy, seed=3)["null"], _summary(noisy, seed=3)["null"])
    assert not torch.equal(_summary(noisy, seed=3)["null"], _summary(noisy, seed=4)["null"])
    assert len(_summary(noisy, permutations=250)["null"]) == 250  # more than one chunk of shuffles


def test_no_overlapping_tokens_gives_none() -> None:
    routing = _audio_routing(lambda u, s, r: [0, 1])
    assert consistency([routing], 0, 1, Segment.VIDEO, EXPERTS, 10) is None  # no video tokens at all


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
    assert {(p["first"], p["second"], p["modality"]) for p in pairs} >= {
        ("a4_v2", "a16_v2", "audio"),
        ("a4_v2", "a4_v5", "video"),
    }
    assert ("a4_v2", "a4_v5", "audio") not in {(p["first"], p["second"], p["modality"]) for p in pairs}  # same rate
    assert all(0 <= p["score"] <= 1 and 0 <= p["chance"] <= 1 and 0 < p["p_value"] <= 1 for p in pairs)
    assert set(result["consistency_mean"]) == {"audio", "video"}  # reported apart, never averaged
    for modality in result["consistency_mean"].values():
        assert modality["permutations"] == PERMUTATIONS >= 200
        per_utterance = modality["utterances"]
        assert per_utterance["index"] == [0, 1, 2, 3]  # two batches of two
        pooled = sum(per_utterance["score"]) / sum(per_utterance["weight"])
        assert pooled == pytest.approx(modality["score"], rel=1e-4)
        assert modality["excess"] == pytest.approx(modality["score"] - modality["chance"])


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


def test_the_step0_control_analyses_the_runs_config_freshly_initialised(run, tmp_path) -> None:
    root, untrained = run
    cfg = load_config("tiny", [f"data.root={root}"])
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    with torch.no_grad():  # a router that has moved away from its start, as training would move it
        for name, p in model.adapters.named_parameters():
            if "router" in name:
                p.copy_(torch.randn_like(p))
    trained = tmp_path / "runs" / "trained"  # a workspace's run, for `pipeline.experts` below
    save_checkpoint(trained / "checkpoints", 5, model.trainable_state_dict(), cfg, {})
    common = ["--labels", "labels/test.csv", "--quiet", "data.num_workers=0"]
    assert main(["experts", str(trained), *common]) == 0
    assert main(["experts", str(trained), "--untrained", *common]) == 0
    assert main(["experts", str(untrained), "--out", str(tmp_path / "fresh"), *common]) == 0

    def read(path):
        return json.loads((path / "experts.json").read_text())

    control, fresh = read(trained / "experts" / "test-step0"), read(tmp_path / "fresh")
    assert control["untrained"] and not read(trained / "experts" / "test")["untrained"]
    assert control["consistency_mean"] == fresh["consistency_mean"]  # training's own step 0
    assert read(trained / "experts" / "test")["consistency_mean"] != control["consistency_mean"]
    ws = Workspace(out=tmp_path)  # what `mome reproduce` runs for each routed run
    piped = pipeline.experts(ws, "trained", tmp_path / "piped", "t", untrained=True)
    assert piped["untrained"] and piped["consistency_mean"] == control["consistency_mean"]
