"""Training to a plateau (`train.plateau`): the validation-WER curve a run logs and the rule that ends it.

Every `every_steps` steps the trainer decodes the validation split greedily (`evaluation.evaluate.dataset_errors`,
the decoding of `mome eval`) and adds a point to the curve: the mean WER, in %, of the decoded rate
combinations. The run stops at the first point where the curve's best value over the last `window` of the
steps so far is not at least `min_gain` points below its best value before that window, or at the cap
(`train.max_steps`). The curve and the reason are kept in the training state, so a resumed run continues the
same curve, and in `<run>/curve.json` beside the newest checkpoint for readers (`mome reproduce`'s report).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mome.io import atomic_write_text, read_json

CURVE_FILE = "curve.json"


@dataclass(frozen=True)
class CurvePoint:
    """One validation check: the mean WER (%) of the decoded rate combinations and each one's (`rates`)."""

    step: int
    wer: float
    rates: dict[str, float]


@dataclass(frozen=True)
class Stop:
    """Why a run ended: a plateau of its curve or the cap of its steps, at `step`, in words (`detail`)."""

    reason: Literal["plateau", "cap"]
    step: int
    detail: str


def plateau_reached(
    curve: Sequence[tuple[int, float]], min_gain: float, window: float, min_steps: int = 0
) -> str | None:
    """Why the run should stop now, in one line, or None to go on.

    `curve`: (step, WER %) in step order; its last point is now, and "the steps so far" are that point's step S.
    The window is the points after step S * (1 - window), the history the points up to it. Stop when both have
    points and the window's best is less than `min_gain` below the history's best; never before `min_steps`."""
    if not curve:
        return None
    step = curve[-1][0]
    if step < min_steps:
        return None
    cut = step * (1 - window)
    history = [wer for s, wer in curve if s <= cut]
    recent = [wer for s, wer in curve if s > cut]
    if not history or not recent:
        return None
    before, since = min(history), min(recent)
    if before - since >= min_gain:
        return None
    return (
        f"plateau at step {step}: best validation WER {since:.2f}% after step {math.floor(cut)}, "
        f"{before:.2f}% up to it: less than {min_gain:g} point(s) better"
    )


def curve_value(wers: dict[str, float]) -> float:
    """The curve's value at one point: the mean of the decoded combinations' WERs (%), rounded as it is logged
    so that the rule reads exactly the logged curve."""
    return round(sum(wers.values()) / len(wers), 4)


def write_curve(
    run_dir: Path, curve: list[CurvePoint], stop: Stop | None, step: int, cap: int, settings: dict[str, Any]
) -> Path:
    """`<run>/curve.json`: the curve and stop of the checkpoint at `step`, with the rule's settings and the cap."""
    stopped = None if stop is None else asdict(stop)
    data = {"step": step, "cap": cap, "plateau": settings, "stop": stopped, "curve": [asdict(p) for p in curve]}
    return atomic_write_text(run_dir / CURVE_FILE, json.dumps(data, indent=2) + "\n")


def read_curve(run_dir: Path) -> dict[str, Any]:
    """The run's curve.json; {} where there is none (a run trained without `train.plateau`)."""
    return read_json(run_dir / CURVE_FILE)
