"""The cascade: where each utterance stops, what it costs, and the calibration that picks the cheapest
threshold and ladder at a target WER (`mome.evaluation.cascade`)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mome.errors import UserError
from mome.evaluation.cascade import calibrate, ladder, load_calibration, save_calibration, score, stop
from mome.evaluation.results import RateCombination

TOKENS = {"a16_v5": 8.0, "a16_v2": 15.0, "a4_v2": 25.0}


def _row(utt: str, rates: str, errors: int, confidence: float, snr: str = "clean") -> dict:
    return {
        "snr": snr,
        "rates": rates,
        "id": utt,
        "sub": errors,
        "del": 0,
        "ins": 0,
        "ref_words": 10,
        "confidence": confidence,
    }


def _records() -> list[dict]:
    """Four utterances: the coarse rung is right where it is confident (-0.1) and wrong where it is not (-2)."""
    rows = []
    for utt, (coarse_errors, coarse_conf) in enumerate([(0, -0.1), (0, -0.1), (5, -2.0), (4, -2.0)]):
        rows += [
            _row(str(utt), "a16_v5", coarse_errors, coarse_conf),
            _row(str(utt), "a16_v2", 3, -1.0),
            _row(str(utt), "a4_v2", 0, -0.5),
        ]
    return rows


def test_the_ladder_is_the_fullest_task_coarsest_first() -> None:
    combos = [
        RateCombination(k, a, v, t)
        for k, a, v, t in [("a4_v2", 4, 2, 25), ("a16_v5", 16, 5, 8.1), ("a4", 4, None, 12.5)]
    ]
    assert ladder(combos) == ["a16_v5", "a4_v2"]
    assert stop({"a16_v5": -0.2, "a4_v2": -9}, ["a16_v5", "a4_v2"], threshold=-0.5) == 0
    assert stop({"a16_v5": -0.7, "a4_v2": -9}, ["a16_v5", "a4_v2"], threshold=-0.5) == 1  # the finest: always last


def test_each_utterance_is_charged_every_rung_it_tried() -> None:
    rungs = ["a16_v5", "a16_v2", "a4_v2"]
    s = score(_records(), "clean", rungs, TOKENS, threshold=-0.5, seconds={"a16_v5": 1.0, "a16_v2": 2.0, "a4_v2": 3.0})
    # utterances 0, 1 stop at a16_v5 (8 tokens/s, no errors); 2, 3 climb all three rungs (48 tokens/s, no errors)
    assert s.wer == 0 and s.tokens_per_second == pytest.approx((8 + 8 + 48 + 48) / 4)
    assert s.stops == {"a16_v5": 0.5, "a16_v2": 0.0, "a4_v2": 0.5}
    assert s.seconds_per_utterance == pytest.approx((1 + 1 + 6 + 6) / 4)
    assert score(_records(), "clean", rungs, TOKENS, threshold=-5).wer == pytest.approx(9 / 40)  # all stop coarse


def test_calibration_picks_the_cheapest_cascade_within_the_target() -> None:
    calibration = calibrate(_records(), ["a16_v5", "a16_v2", "a4_v2"], TOKENS, relative=1.05)
    # a16_v2 never helps (its 3 errors miss the target): the ladder skips it, and only unsure utterances go on
    assert calibration["ladder"] == ["a16_v5", "a4_v2"]
    assert -2.0 < calibration["threshold"] <= -0.1
    assert calibration["cascade"]["wer"] == 0 and calibration["cascade"]["tokens_per_second"] == pytest.approx(
        (8 + 8 + 33 + 33) / 4
    )
    assert calibration["finest"] == {"key": "a4_v2", "wer": 0.0, "tokens_per_second": 25.0}


def test_no_cheaper_cascade_means_the_finest_alone() -> None:
    rows = [_row("0", "a16_v5", 5, -0.1), _row("0", "a4_v2", 0, -0.5)]  # confidently wrong at the coarse rung
    calibration = calibrate(rows, ["a16_v5", "a4_v2"], TOKENS)
    assert math.isinf(calibration["threshold"]) and calibration["ladder"] == ["a4_v2"]


def test_calibrate_then_eval_with_the_cascade(corpus, tmp_path, monkeypatch, capsys) -> None:
    import json as json_

    from mome.cli import main
    from tiny import untrained_run

    fast = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]
    untrained_run(corpus, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    args = ["eval", "run", "--labels", "labels/test.csv", "--limit", "2", "--quiet", "--snr", "clean", "0"]
    assert main([*args, "--policy", "cascade", *fast]) == 2  # not calibrated yet: one line saying what to run
    assert "run `mome calibrate run` first" in capsys.readouterr().err
    assert main(["calibrate", "run", "--limit", "2", "--quiet", *fast]) == 0
    calibration = json_.loads(Path("run/calibration.json").read_text())
    assert calibration["ladder"][-1] == "a4_v2" and calibration["utterances"] == 2
    assert main([*args, "--policy", "cascade", *fast]) == 0
    results = json_.loads(Path("run/eval/test/results.json").read_text())
    policy = results["policies"]["cascade"]
    assert set(policy) == {"threshold", "ladder", "clean", "0"} and policy["ladder"] == calibration["ladder"]
    assert sum(policy["clean"]["stops"].values()) == pytest.approx(1)
    times = json_.loads(Path("run/eval/test/decode_times.json").read_text())
    assert times["policies"]["cascade"]["clean"] > 0
    assert "policy: cascade" in Path("run/eval/test/results.md").read_text()


def test_a_changed_calibration_is_refused_in_one_line(tmp_path: Path) -> None:
    """The threshold decides every cascade answer: a file edited or damaged after `mome calibrate` must not
    be used silently."""
    save_calibration(tmp_path, {"threshold": -0.5, "ladder": ["a16_v5", "a4_v2"]})
    assert load_calibration(tmp_path)["threshold"] == -0.5
    path = tmp_path / "calibration.json"
    path.write_text(path.read_text().replace("-0.5", "-5.0"))
    with pytest.raises(UserError, match="calibration.json: corrupt calibration"):
        load_calibration(tmp_path)
