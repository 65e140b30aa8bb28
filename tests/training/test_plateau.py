"""`train.plateau`: the stop rule on its own, tiny runs that stop on a plateau or at the cap, a resumed run that
continues its curve, and one-line config errors."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mome.cli import main
from mome.config import load_config
from mome.runs.load import load_checkpoint
from mome.training.optim import warmup_cosine
from mome.training.plateau import plateau_reached, read_curve
from mome.training.recipe import Trainer, train
from tiny import FAST_TRAIN


def _overrides(root: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        f"data.root={root}",
        f"train.output_dir={out}",
        f"train.max_steps={steps}",
        "train.save_every_steps=2",
        "train.plateau.every_steps=2",
        *FAST_TRAIN,
        *extra,
    ]


# ------------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize(
    ("curve", "stops"),
    [
        ([], False),
        ([(100, 50.0)], False),  # no history before the window yet
        ([(100, 50.0), (200, 50.0)], True),  # flat
        ([(100, 50.0), (200, 49.0)], False),  # exactly min_gain better: still improving
        ([(100, 50.0), (200, 49.01)], True),  # just less than min_gain
        ([(100, 50.0), (200, 60.0)], True),  # worse
        ([(100, 40.0), (200, 30.0), (300, 30.5), (400, 30.2)], True),  # the best is before the window (<= 300)
        ([(100, 40.0), (200, 35.0), (300, 33.0), (400, 31.9)], False),  # the window's best beats it by 1.1
        ([(100, 40.0), (200, 30.0), (300, 45.0), (400, 44.0)], True),  # a worse stretch does not hide the old best
        ([(0, 100.0), (100, 100.0)], True),  # a step-0 point is history like any other
    ],
)
def test_the_rule_stops_when_the_last_window_gains_less_than_min_gain(curve, stops) -> None:
    reason = plateau_reached(curve, min_gain=1.0, window=0.25)
    assert (reason is not None) == stops, reason
    if stops:
        assert reason.startswith(f"plateau at step {curve[-1][0]}:") and "\n" not in reason


def test_the_rule_reads_the_last_quarter_of_the_steps_so_far() -> None:
    """2 points better every 100 steps up to step 800, flat after: the first stop is at 1100, the first step
    whose last quarter (825-1100) lies wholly on the flat part; at 1000 the window (750-1000) still holds 800."""
    wer = {s: 100 - 2 * min(s, 800) / 100 for s in range(100, 2001, 100)}
    curve = sorted(wer.items())
    first = next(s for s in wer if plateau_reached(curve[: s // 100], 1.0, 0.25))
    assert first == 1100
    half = next(s for s in wer if plateau_reached(curve[: s // 100], 1.0, 0.5))  # a longer window stops later
    assert half == 1600


def test_min_steps_and_the_window_fraction() -> None:
    flat = [(100, 50.0), (200, 50.0), (300, 50.0)]
    assert plateau_reached(flat, 1.0, 0.25, min_steps=301) is None
    assert plateau_reached(flat, 1.0, 0.25, min_steps=300) is not None
    assert plateau_reached(flat, 0.0, 0.25) is None  # min_gain 0: a flat curve is not worse
    steep = [(100, 50.0), (200, 48.0), (300, 45.0), (400, 44.5)]
    assert plateau_reached(steep, 1.0, 0.25) is not None  # window 300-400: 0.5 better than 45 at 300
    assert plateau_reached(steep, 1.0, 0.5) is None  # window 200-400: 3.5 better than 48 at 200


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.plateau.every_steps=0", r"train\.plateau\.every_steps: must be >= 1, got 0"),
        ("train.plateau.min_gain=-1", r"train\.plateau\.min_gain: must be >= 0"),
        ("train.plateau.window=1", r"train\.plateau\.window: must be between 0 and 1"),
        ("train.plateau.window=0", r"train\.plateau\.window: must be between 0 and 1"),
        ("train.plateau.min_steps=-1", r"train\.plateau\.min_steps: must be >= 0"),
        ("train.plateau.max_utterances=0", r"train\.plateau\.max_utterances: must be >= 1"),
        (
            "train.plateau.rates=[a4_v3]",
            r"train\.plateau\.rates: 'a4_v3' is not a trained combination \(trained: a4_v2",
        ),
        ("train.plateau.rates=[]", r"train\.plateau\.rates: empty"),
        ("train.plateau.every=5", r"train\.plateau\.every: unknown field"),
        ("train.plateau.every_steps=often", r"train\.plateau\.every_steps: expected an integer"),
    ],
)
def test_a_bad_plateau_setting_is_one_line_naming_the_field(override, message, capsys) -> None:
    assert main(["params", "tiny", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("mome: error: train.plateau."), err
    assert re.search(message, err), err


def test_plateau_is_off_by_default_in_every_preset() -> None:
    from mome.config import list_presets

    assert all(not load_config(name).train.plateau.enabled for name in list_presets())


# ------------------------------------------------------------------------------------------ runs
def _val_rows(run: Path) -> dict[int, dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return {int(r["step"]): r for r in csv.DictReader(f) if r.get("val/wer")}


def test_a_run_whose_wer_never_improves_stops_on_a_plateau_before_the_cap(train_corpus, tmp_path, capsys) -> None:
    """lr 1e-12: the weights hardly move, the greedy hypotheses not at all, so the curve is flat and the run
    stops at its second check (the first with history before the window), with its checkpoint there."""
    out = tmp_path / "run"
    train(load_config("tiny", _overrides(train_corpus, out, 12, "train.lr=1e-12")))
    payload = load_checkpoint(out)
    state = payload["train_state"]["progress"]
    assert state["step"] == 4 and state["stop"]["reason"] == "plateau" and state["stop"]["step"] == 4
    assert "plateau at step 4" in capsys.readouterr().out
    assert [p["step"] for p in state["curve"]] == [2, 4]
    assert state["curve"][0]["wer"] == state["curve"][1]["wer"]
    assert set(state["curve"][0]["rates"]) == {"a4_v2", "a4_v5", "a16_v2", "a16_v5"}
    rows = _val_rows(out)  # the curve the rule read is the one logged
    assert sorted(rows) == [2, 4]
    assert [float(rows[p["step"]]["val/wer"]) for p in state["curve"]] == [p["wer"] for p in state["curve"]]
    assert float(rows[4]["val/wer/a16_v5"]) == state["curve"][1]["rates"]["a16_v5"]
    curve = read_curve(out)
    assert curve["stop"] == state["stop"] and curve["curve"] == state["curve"] and curve["cap"] == 12
    # the schedule spans the cap, not the stop: the lr at step 4 is that of step 4 of 12
    last_lr = payload["train_state"]["scheduler"]["_last_lr"][0]
    assert last_lr == pytest.approx(1e-12 * warmup_cosine(4, 0, 12), rel=1e-6)

    # Rerunning the same command does nothing; a rule that no longer finds a plateau continues the same run.
    capsys.readouterr()
    assert train(load_config("tiny", _overrides(train_corpus, out, 12, "train.lr=1e-12"))) == {}
    assert "already trained for 4 steps (plateau at step 4" in capsys.readouterr().out
    train(load_config("tiny", _overrides(train_corpus, out, 8, "train.lr=1e-12", "train.plateau.min_gain=0")))
    state = load_checkpoint(out)["train_state"]["progress"]
    assert state["step"] == 8 and state["stop"]["reason"] == "cap"
    assert [p["step"] for p in state["curve"]] == [2, 4, 6, 8]


def test_a_run_that_keeps_improving_reaches_the_cap(train_corpus, tmp_path) -> None:
    """`min_steps` beyond the cap: no plateau stop, the run trains every step and says it stopped at the cap;
    decoding the validation split in between changes no step (the weights equal a run without the rule)."""
    out = tmp_path / "run"
    train(load_config("tiny", _overrides(train_corpus, out, 6, "train.plateau.min_steps=100")))
    payload = load_checkpoint(out)
    state = payload["train_state"]["progress"]
    assert state["step"] == 6 and state["stop"] == {"reason": "cap", "step": 6, "detail": "cap of 6 steps"}
    assert [p["step"] for p in state["curve"]] == [2, 4, 6] and sorted(_val_rows(out)) == [2, 4, 6]
    assert all(0 <= p["wer"] and math.isfinite(p["wer"]) for p in state["curve"])
    plain = tmp_path / "plain"
    train(load_config("tiny", _overrides(train_corpus, plain, 6, "train.plateau.every_steps=null")))
    assert not (plain / "curve.json").exists()
    reference = load_checkpoint(plain)
    assert reference["train_state"]["progress"]["curve"] == []
    for name, value in reference["model"].items():
        torch.testing.assert_close(payload["model"][name], value, rtol=0, atol=0, msg=name)


SCRIPT = {2: 50.0, 4: 40.0, 6: 39.5, 8: 39.4, 10: 39.3, 12: 39.2}
"""A scripted curve: at step 6 the window (after 4.5) gains 0.5 on the 40 of step 4, so the run stops there, but
only if it remembers step 4; a run that forgot its curve at a resume would stop at 8 (its own 6 vs 8)."""


def _scripted(monkeypatch) -> list[int]:
    decoded: list[int] = []

    def wers(self):
        decoded.append(self.state.step)
        return {"a4_v2": SCRIPT[self.state.step]}

    monkeypatch.setattr(Trainer, "validation_wers", wers)
    return decoded


def test_a_resumed_run_continues_the_same_curve(train_corpus, tmp_path, monkeypatch, capsys) -> None:
    decoded, armed = _scripted(monkeypatch), [True]
    after = Trainer._after_step

    def interrupt(self, values):
        after(self, values)
        if self.state.step == 5 and armed[0]:  # Ctrl-C once, after the checks at 2 and 4
            armed[0] = False
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "_after_step", interrupt)
    out = tmp_path / "run"
    assert main(["train", "tiny", *_overrides(train_corpus, out, 12)]) == 130
    assert decoded == [2, 4] and load_checkpoint(out)["train_state"]["progress"]["stop"] is None
    train(load_config("tiny", _overrides(train_corpus, out, 12)))
    assert decoded == [2, 4, 6]  # the earlier points were kept, not decoded again
    state = load_checkpoint(out)["train_state"]["progress"]
    assert state["step"] == 6 and state["stop"]["reason"] == "plateau"
    assert [(p["step"], p["wer"]) for p in state["curve"]] == [(2, 50.0), (4, 40.0), (6, 39.5)]
    assert json.loads((out / "curve.json").read_text())["stop"]["step"] == 6
    assert sorted(_val_rows(out)) == [2, 4, 6]  # metrics.csv holds the whole curve once


def test_plateau_needs_a_validation_split(train_corpus, tmp_path) -> None:
    from mome.errors import UserError

    with pytest.raises(UserError, match=r"^train\.plateau: needs a validation split to decode; data\.val_labels"):
        train(load_config("tiny", _overrides(train_corpus, tmp_path / "run", 4, "data.val_labels=labels/none.csv")))


@pytest.mark.slow
@pytest.mark.skipif(not Path(sys.executable).with_name("torchrun").exists(), reason="torchrun not installed")
def test_data_parallel_ranks_stop_at_the_same_plateau(train_corpus, tmp_path) -> None:
    """The main rank decodes, the other receives its numbers: both stop at the same step (no rank waits for
    the other at a collective) with the same weights."""
    out = tmp_path / "ddp"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    result = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "--master-port",
            "29537",
            "-m",
            "mome.cli",
            "train",
            "tiny",
            *_overrides(train_corpus, out, 12, "train.lr=1e-12"),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sums = re.findall(r"\[rank (\d)\] trainable weights checksum ([-+.0-9e]+/[-+.0-9e]+)", result.stdout)
    assert sorted(r for r, _ in sums) == ["0", "1"] and sums[0][1] == sums[1][1], result.stdout
    state = load_checkpoint(out)["train_state"]["progress"]
    assert state["step"] == 4 and state["stop"]["reason"] == "plateau"
