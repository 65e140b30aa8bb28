"""Bootstrap intervals over seeds and utterances: known answers on synthetic per-utterance error counts, WER
as total errors / total words in every draw, shared resamples, determinism and the verdict vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mome.evaluation.bootstrap import Bootstrap, Interval, Samples, combine, read_counts, wer_samples

UTTERANCES = 40


def _errors(seeds: int, errors: list[int], seed: int) -> np.ndarray:
    """[seeds, utterances] error counts: each seed's total error count spread at random over the utterances."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, UTTERANCES, e), minlength=UTTERANCES) for e in errors[:seeds]])


def _cell(method: str, errors: np.ndarray) -> Samples:
    """Every utterance has 10 reference words."""
    return Samples(errors.astype(float), np.full(errors.shape, 10.0), method)


def test_identical_methods_give_an_interval_on_zero_and_no_verdict() -> None:
    errors = _errors(3, [80, 95, 70], seed=0)
    boot = Bootstrap({"a": _cell("a", errors), "b": _cell("b", errors.copy())}, draws=500)
    interval = boot.interval({"a": 1, "b": -1})
    assert interval.low <= 0 <= interval.high and interval.estimate == 0
    assert interval.verdict("negative") == interval.verdict("positive") == "inconclusive"
    # one seed each: every draw is exactly 0, so the utterance resample is shared by both methods
    one = Bootstrap({"a": _cell("a", errors[:1]), "b": _cell("b", errors[:1].copy())}, draws=500)
    assert np.array_equal(one.draws["a"], one.draws["b"])


def test_a_method_with_fewer_errors_on_every_utterance_holds() -> None:
    worse = _errors(3, [120, 110, 130], seed=1)
    better = np.maximum(worse - 1, 0)  # one error fewer on every utterance that had one
    boot = Bootstrap({"better": _cell("better", better), "worse": _cell("worse", worse)}, draws=1000)
    interval = boot.interval({"better": 1, "worse": -1})
    assert interval.high < 0 and interval.verdict("negative") == "holds"
    assert interval.verdict("positive") == "does not hold"
    want = (better.sum() - worse.sum()) / (3 * 10 * UTTERANCES)  # mean over seeds of corpus WERs
    assert interval.estimate == pytest.approx(want)


def test_seeds_that_disagree_leave_the_difference_inconclusive() -> None:
    # method a: one seed far better than b, one far worse; b: one seed in between
    a = np.stack([np.full(UTTERANCES, 1), np.full(UTTERANCES, 5)])
    b = np.full((1, UTTERANCES), 3)
    interval = Bootstrap({"a": _cell("a", a), "b": _cell("b", b)}, draws=1000).interval({"a": 1, "b": -1})
    assert interval.low < -0.15 and interval.high > 0.15 and interval.verdict("negative") == "inconclusive"


def test_every_draw_is_total_errors_over_total_words_not_a_mean_of_utterance_wers() -> None:
    # utterance 0: 1 error in 1 word (WER 1); utterance 1: no error in 9 words
    cell = Samples(np.array([[1.0, 0.0]]), np.array([[1.0, 9.0]]), "m")
    draws = Bootstrap({"m": cell}, draws=300).draws["m"]
    assert set(np.round(draws, 6)) == {0.0, 0.1, 1.0}  # BB, AB (1 / 10, not (1 + 0) / 2), AA
    assert cell.value == pytest.approx(0.1)


def test_a_methods_seeds_are_resampled_once_for_all_its_cells() -> None:
    low, high = np.full((1, UTTERANCES), 1.0), np.full((1, UTTERANCES), 3.0)
    errors = np.concatenate([low, high])  # seed 0: WER 0.1, seed 1: WER 0.3, on every utterance
    cells = {"clean": _cell("m", errors), "noisy": _cell("m", errors + 1), "other": _cell("o", errors.copy())}
    boot = Bootstrap(cells, draws=400)
    assert set(np.round(boot.draws["clean"], 6)) == {0.1, 0.2, 0.3}
    np.testing.assert_allclose(boot.draws["noisy"], boot.draws["clean"] + 0.1)  # the same seeds drawn
    assert not np.array_equal(boot.draws["other"], boot.draws["clean"])  # another method: its own draws


def test_draws_are_seeded_and_do_not_move_when_a_method_is_added() -> None:
    cells = {"a": _cell("a", _errors(2, [50, 60], 2)), "b": _cell("b", _errors(2, [55, 40], 3))}
    first, again = Bootstrap(cells, seed=7), Bootstrap(cells, seed=7)
    assert first.interval({"a": 1, "b": -1}) == again.interval({"a": 1, "b": -1})
    assert Bootstrap(cells, seed=8).interval({"a": 1, "b": -1}) != first.interval({"a": 1, "b": -1})
    more = Bootstrap({**cells, "c": _cell("c", _errors(3, [1, 2, 3], 4))}, seed=7)
    assert np.array_equal(more.draws["a"], first.draws["a"])


def test_verdicts_and_their_combination() -> None:
    assert Interval(-2, -3, -1).verdict("negative") == "holds"
    assert Interval(2, 1, 3).verdict("negative") == "does not hold"
    assert Interval(0.5, 0, 1).verdict("positive") == "inconclusive"  # touching zero is not past it
    assert combine(["holds", "holds"]) == "holds"
    assert combine(["holds", "inconclusive"]) == "inconclusive"
    assert combine(["holds", "does not hold", "inconclusive"]) == "does not hold"
    assert combine([]) == "inconclusive"
    assert Interval(-0.023, -0.04, -0.006).scaled(100).text() == "-2.3 [-4.0, -0.6]"


def test_cells_must_share_their_utterances_and_a_methods_seeds() -> None:
    with pytest.raises(ValueError, match="same test utterances"):
        Bootstrap({"a": _cell("a", np.ones((1, 4))), "b": _cell("b", np.ones((1, 5)))})
    with pytest.raises(ValueError, match="different numbers of seeds"):
        Bootstrap({"x": _cell("m", np.ones((1, 4))), "y": _cell("m", np.ones((2, 4)))})


def test_cells_from_hypotheses_files(tmp_path) -> None:
    rows = [
        ("clean", "a4_v2", "u1", 1, 0, 0, 4),
        ("clean", "a4_v2", "u2", 0, 2, 1, 6),
        ("0", "a4_v2", "u2", 0, 0, 0, 6),
    ]
    path = tmp_path / "hypotheses.jsonl"
    path.write_text(
        "".join(
            json.dumps({"snr": s, "rates": r, "id": i, "sub": a, "del": b, "ins": c, "ref_words": w}) + "\n"
            for s, r, i, a, b, c, w in rows
        )
    )
    counts = read_counts(path)
    cell = wer_samples("m", [counts, counts], "a4_v2", "clean", ["u2", "u1"])
    np.testing.assert_array_equal(cell.numerator, [[3, 1], [3, 1]])
    np.testing.assert_array_equal(cell.denominator, [[6, 4], [6, 4]])
    assert wer_samples("m", [counts], "a16_v5", "clean", ["u1"]) is None  # not decoded there
    with pytest.raises(ValueError, match="no hypothesis for u1"):
        wer_samples("m", [counts], "a4_v2", "0", ["u1", "u2"])
