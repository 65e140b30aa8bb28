"""`mome.load(run).transcribe(...)`: the text with the rates, modalities, tokens and timings it took; a
budget in tokens picks the finest rates that fit; `budget="auto"` runs the calibrated cascade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mome
from mome.errors import UserError
from tiny import untrained_run

FAST = ["decode.num_beams=1", "decode.max_new_tokens=2", "data.num_workers=0"]
TOKENS_PER_SECOND = {"a4_v2": 25.0, "a4_v5": 17.5, "a16_v2": 15.625, "a16_v5": 8.125}


@pytest.fixture(scope="module")
def clip(corpus: Path) -> tuple[Path, Path]:
    mp4 = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    return mp4, mp4.with_suffix(".wav")


@pytest.fixture(scope="module")
def model(corpus: Path, tmp_path_factory) -> mome.inference.api.Recognizer:
    return mome.load(untrained_run(corpus, tmp_path_factory.mktemp("run")), FAST)


def test_transcribe_at_chosen_rates(model, clip) -> None:
    mp4, wav = clip
    result = model.transcribe(video=mp4, audio=wav, rates=(16, 5))
    assert isinstance(result.text, str) and result.rates == "a16_v5" and result.tried == ["a16_v5"]
    assert result.modalities == ("audio", "video") and result.confidence <= 0
    assert result.tokens == pytest.approx(TOKENS_PER_SECOND["a16_v5"] * result.duration)
    assert {"read", "encode", "decode"} <= set(result.seconds)
    assert model.transcribe(video=mp4, audio=wav).rates == "a4_v2"  # default: the finest
    with pytest.raises(UserError, match="rates or a budget, not both"):
        model.transcribe(video=mp4, audio=wav, rates=(16, 5), budget="auto")


def test_a_token_budget_picks_the_finest_rates_that_fit(model, clip) -> None:
    mp4, wav = clip
    duration = model.transcribe(video=mp4, audio=wav).duration
    assert model.transcribe(video=mp4, audio=wav, budget=f"tokens={16 * duration:.1f}").rates == "a16_v2"
    assert model.transcribe(video=mp4, audio=wav, budget=f"tokens={100 * duration:.0f}").rates == "a4_v2"
    with pytest.raises(UserError, match="even a16_v5 needs"):
        model.transcribe(video=mp4, audio=wav, budget=f"tokens={duration:.2f}")
    with pytest.raises(UserError, match="expected 'auto'"):
        model.transcribe(video=mp4, audio=wav, budget="seconds=2")


def test_a_time_budget_reads_the_decode_times_measured_here(model, clip) -> None:
    mp4, wav = clip
    with pytest.raises(UserError, match="run `mome eval"):
        model.transcribe(video=mp4, audio=wav, budget="ms=40")
    times = model.run_dir / "eval" / "test" / "decode_times.json"
    times.parent.mkdir(parents=True)
    measured = {"a4_v2": 0.050, "a4_v5": 0.045, "a16_v2": 0.035, "a16_v5": 0.030}
    times.write_text(json.dumps({"seconds_per_utterance": measured}))
    assert model.transcribe(video=mp4, audio=wav, budget="ms=40").rates == "a16_v2"  # the finest within 40 ms
    assert model.transcribe(video=mp4, audio=wav, budget="ms=100").rates == "a4_v2"
    with pytest.raises(UserError, match="no rate combination decodes that fast"):
        model.transcribe(video=mp4, audio=wav, budget="ms=10")


def test_auto_runs_the_calibrated_cascade(model, clip) -> None:
    mp4, wav = clip
    with pytest.raises(UserError, match="run `mome calibrate"):
        model.transcribe(video=mp4, audio=wav, budget="auto")
    calibration = model.run_dir / "calibration.json"
    ladder = ["a16_v5", "a16_v2", "a4_v2"]
    calibration.write_text(json.dumps({"threshold": -1e9, "ladder": ladder}))  # always confident: stops at once
    assert model.transcribe(video=mp4, audio=wav, budget="auto").tried == ["a16_v5"]
    calibration.write_text(json.dumps({"threshold": 0.5, "ladder": ladder}))  # never confident: climbs every rung
    result = model.transcribe(video=mp4, audio=wav, budget="auto")
    assert result.tried == ladder and result.rates == "a4_v2"
    assert result.tokens == pytest.approx(sum(TOKENS_PER_SECOND[k] for k in ladder) * result.duration)


def test_a_unified_model_falls_back_and_says_so(corpus, clip, tmp_path) -> None:
    mp4, _ = clip
    unified = mome.load(untrained_run(corpus, tmp_path / "u", ["model.compression.task=any"]), FAST)
    result = unified.transcribe(video=mp4, rates=(16, 5))  # the mouth-crop mp4 has no audio track
    assert result.modalities == ("video",) and result.rates == "v5" and "no audio track" in result.problems["audio"]
    assert "a16" in unified.combinations and "v2" in unified.combinations


def test_every_rate_at_once_with_the_cascades_choice(corpus, clip, tmp_path) -> None:
    mp4, wav = clip
    unified = mome.load(untrained_run(corpus, tmp_path / "u", ["model.compression.task=any"]), FAST)
    results, chosen = unified.transcribe_each(video=mp4, audio=wav)
    assert [r.rates for r in results] == ["a4_v2", "a4_v5", "a16_v2", "a4", "v2", "a16_v5", "v5", "a16"]  # by cost
    assert chosen is None  # not calibrated
    (unified.run_dir / "calibration.json").write_text(json.dumps({"threshold": 0.5, "ladder": ["a16_v5", "a4_v2"]}))
    assert unified.transcribe_each(video=mp4, audio=wav)[1] == "a4_v2"  # never confident: the finest rung
    results, chosen = unified.transcribe_each(video=mp4)  # no audio track: the rungs map onto video
    assert [r.rates for r in results] == ["v2", "v5"] and chosen == "v2"


# A random LLM with wide weights makes confident, input-dependent predictions (tests/tiny.py); four tokens keep
# the texts apart without making the test slow.
WIDE = ["decode.num_beams=1", "decode.max_new_tokens=4", "data.num_workers=0", "model.llm.arch.initializer_range=0.5"]


@pytest.fixture(scope="module")
def clips(corpus: Path) -> tuple[list[Path], list[Path]]:
    videos = sorted(corpus.glob("synth/**/*.mp4"))
    return videos, [v.with_suffix(".wav") for v in videos]


def _count_generate(recognizer: mome.inference.api.Recognizer, monkeypatch) -> list[int]:
    """Rows of each `generate` call of the recognizer's LLM, in order."""
    calls: list[int] = []
    generate = recognizer.model.llm.generate

    def counted(*args, **kwargs):
        calls.append(len(kwargs["inputs_embeds"]))
        return generate(*args, **kwargs)

    monkeypatch.setattr(recognizer.model.llm, "generate", counted)
    return calls


def _same(batched: list, alone: list) -> None:
    """The same transcripts, rungs and costs; confidences up to float rounding (left padding changes the
    shapes of the attention sums; 1e-4 on a mean log-probability, as `mome eval`'s batch-size test)."""
    for key in ("text", "rates", "tried", "tokens", "modalities"):
        assert [getattr(r, key) for r in batched] == [getattr(r, key) for r in alone], key
    assert [r.confidence for r in batched] == pytest.approx([r.confidence for r in alone], abs=1e-4)


def test_a_cascade_over_many_clips_decodes_each_rung_in_batches(corpus, clips, tmp_path, monkeypatch) -> None:
    """`transcribe_many` decodes every clip at the first rung in one batch, then the clips still below the
    threshold together at the next: each clip's text, rungs and confidence are those of the clip alone, in
    one generate call per rung (and `decode.batch_size` rows) instead of one per clip and rung."""
    videos, audios = clips
    model = mome.load(untrained_run(corpus, tmp_path / "run"), WIDE)
    calls = _count_generate(model, monkeypatch)
    model.cfg.decode.batch_size = 3
    first = model.transcribe_many(videos, audios, rates=(16, 5))
    assert calls == [3, 3, 2]  # 8 clips, 3 per call
    model.cfg.decode.batch_size = 8
    confidences = sorted(r.confidence for r in first)
    middle = len(confidences) // 2
    assert confidences[middle] - confidences[middle - 1] > 1e-3, "the threshold must sit clear of the tolerance"
    threshold = (confidences[middle] + confidences[middle - 1]) / 2  # half the clips stop at the first rung
    ladder = ["a16_v5", "a16_v2", "a4_v2"]
    (model.run_dir / "calibration.json").write_text(json.dumps({"threshold": threshold, "ladder": ladder}))
    calls.clear()
    alone = [model.transcribe(video, audio, budget="auto") for video, audio in zip(videos, audios)]
    assert calls == [1] * sum(len(r.tried) for r in alone)
    assert {len(r.tried) for r in alone} >= {1, 2}, "some clips must stop early and some climb"
    assert len({r.text for r in alone}) > 2, "a near-constant output would prove nothing"
    _same([f for f, a in zip(first, alone) if a.tried == ladder[:1]], [a for a in alone if a.tried == ladder[:1]])
    calls.clear()
    _same(model.transcribe_many(videos, audios, budget="auto"), alone)
    assert calls == [sum(len(r.tried) > k for r in alone) for k in range(max(len(r.tried) for r in alone))]
    assert model.transcribe_many(videos=[]) == []
    with pytest.raises(UserError, match="8 videos and 1 audio files"):
        model.transcribe_many(videos, audios[:1])
    with pytest.raises(UserError, match="give a clip"):
        model.transcribe_many([videos[0], None], [audios[0], None])
    with pytest.raises(UserError, match="takes lists of paths"):
        model.transcribe_many(videos[0])


def test_every_rate_of_a_clip_decodes_in_batches(corpus, clips, tmp_path, monkeypatch) -> None:
    """`transcribe_each` decodes a clip's combinations side by side, `decode.batch_size` per generate call:
    each the text and confidence of the clip decoded alone at that combination."""
    videos, audios = clips
    unified = mome.load(untrained_run(corpus, tmp_path / "u", ["model.compression.task=any"]), WIDE)
    calls = _count_generate(unified, monkeypatch)
    results, _ = unified.transcribe_each(videos[2], audios[2])
    assert calls == [8]  # one clip at 8 combinations: one call
    alone = [unified.transcribe(videos[2], audios[2], rates=r.rates) for r in results]
    assert len({r.text for r in alone}) > 2, "a near-constant output would prove nothing"
    _same(results, alone)
    calls.clear()
    unified.cfg.decode.batch_size = 3
    _same(unified.transcribe_each(videos[2], audios[2])[0], alone)
    assert calls == [3, 3, 2]
