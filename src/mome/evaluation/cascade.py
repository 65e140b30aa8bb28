"""The granularity chosen per utterance: decode at the coarsest rate combination, and while the hypothesis'
confidence (its mean token log-probability, `AVSRModel.generate_scored`) is below a threshold, decode again
at the next finer one. Easy utterances stop early; hard ones pay for the finest rates.

    ladder      the combinations of the model's fullest task (AVSR for an AVSR or unified model), ordered by
                LLM input tokens per second of speech, coarsest first
    threshold   calibrated on the validation split for a target WER (`mome calibrate`, `calibration.json`
                in the run directory): the cheapest threshold whose cascade WER is within `relative` of the
                finest combination's

Evaluation decodes every combination for every utterance anyway, so `mome eval --policy cascade` scores the
cascade from those hypotheses: each utterance takes the hypothesis of the first rung it stops at, and is
charged the tokens (and the measured decode time) of every rung it tried. Greedy decoding of one utterance
does not depend on the others in its batch, so this is what a live cascade (`mome.inference.api`) outputs.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from mome.evaluation.results import CascadeScore, PolicyScores, RateCombination
from mome.io import JsonObject, read_json
from mome.runs import CALIBRATION_FILE
from mome.runs.checksums import verify_checksum, write_checked

DEFAULT_RELATIVE = 1.05
"""Calibration target: the cascade's validation WER at most 5% (relative) above the finest combination's,
leaving room below the 10% that the test split is judged against."""


def ladder(combinations: Sequence[RateCombination]) -> list[str]:
    """Keys of the combinations of the fullest task present (AVSR over ASR / VSR), coarsest first."""
    both = [c for c in combinations if c.audio_rate and c.video_rate]
    rungs = both or combinations
    return [c.key for c in sorted(rungs, key=lambda c: c.tokens_per_second)]


def stop(confidences: dict[str, float], rungs: list[str], threshold: float) -> int:
    """Index of the rung where the cascade stops: the first confident one, else the finest."""
    for i, key in enumerate(rungs[:-1]):
        if confidences[key] >= threshold:
            return i
    return len(rungs) - 1


def _utterances(records: list[JsonObject], snr: str, rungs: list[str]) -> list[dict[str, JsonObject]]:
    """{rung: record} per utterance at `snr` that has a hypothesis at every rung."""
    by_id: dict[str, dict[str, JsonObject]] = defaultdict(dict)
    for r in records:
        if r["snr"] == snr and r["rates"] in rungs:
            by_id[r["id"]][r["rates"]] = r
    return [u for u in by_id.values() if len(u) == len(rungs)]


def score(
    records: list[JsonObject],
    snr: str,
    rungs: list[str],
    tokens: dict[str, float],
    threshold: float,
    seconds: dict[str, float] | None = None,
) -> CascadeScore:
    """The cascade at `threshold` over the hypotheses in `records` (hypotheses.jsonl rows) at one SNR."""
    return _score(_utterances(records, snr, rungs), rungs, tokens, threshold, seconds)


def _score(
    utterances: list[dict[str, JsonObject]],
    rungs: list[str],
    tokens: dict[str, float],
    threshold: float,
    seconds: dict[str, float] | None = None,
) -> CascadeScore:
    """`score` over utterances already grouped ({rung: record} each, with every rung of `rungs`)."""
    errors = words = 0
    cost = time = 0.0
    stops = dict.fromkeys(rungs, 0)
    for u in utterances:
        i = stop({k: r["confidence"] for k, r in u.items()}, rungs, threshold)
        chosen = u[rungs[i]]
        errors += chosen["sub"] + chosen["del"] + chosen["ins"]
        words += chosen["ref_words"]
        cost += sum(tokens[k] for k in rungs[: i + 1])
        time += sum(seconds[k] for k in rungs[: i + 1]) if seconds else 0.0
        stops[rungs[i]] += 1
    n = max(len(utterances), 1)
    return CascadeScore(
        wer=errors / max(words, 1),
        tokens_per_second=cost / n,
        stops={k: v / n for k, v in stops.items()},
        seconds_per_utterance=time / n if seconds else None,
    )


def calibrate(
    records: list[JsonObject],
    rungs: list[str],
    tokens: dict[str, float],
    relative: float = DEFAULT_RELATIVE,
    snr: str = "clean",
) -> JsonObject:
    """The cheapest cascade (fewest tokens) whose WER is at most `relative` x the finest rung's: a threshold
    and the coarser rungs worth trying before the finest (every subset of them, in order, is considered)."""
    utterances = _utterances(records, snr, rungs)  # grouped once: every ladder is scored on the same ones
    finest = _score(utterances, rungs[-1:], tokens, math.inf)  # the finest rung alone
    target = relative * finest.wer
    best = (math.inf, rungs[-1:], finest)
    for mask in range(1, 2 ** (len(rungs) - 1)):
        ladder_ = [k for i, k in enumerate(rungs[:-1]) if mask >> i & 1] + rungs[-1:]
        candidates = sorted({u[k]["confidence"] for u in utterances for k in ladder_[:-1]})
        for threshold in candidates:  # a threshold at a confidence value: utterances at it stop there
            s = _score(utterances, ladder_, tokens, threshold)
            if s.wer <= target + 1e-12 and s.tokens_per_second < best[2].tokens_per_second:
                best = (threshold, ladder_, s)
    threshold, chosen, chosen_score = best
    return {
        "threshold": threshold,  # inf: no cascade is cheaper at the target: decode the finest rung only
        "ladder": chosen,
        "relative": relative,
        "snr": snr,
        "finest": {"key": rungs[-1], "wer": round(finest.wer, 6), "tokens_per_second": finest.tokens_per_second},
        "cascade": chosen_score.to_json(),
        "utterances": len(utterances),
    }


def save_calibration(run_dir: Path, calibration: JsonObject) -> Path:
    text = json.dumps({**calibration, "threshold": _finite(calibration["threshold"])}, indent=2) + "\n"
    path = run_dir / CALIBRATION_FILE
    write_checked(path, text.encode())  # a changed threshold would silently change every cascade answer
    return path


def load_calibration(run_dir: Path) -> JsonObject:
    """The run's calibrated cascade (threshold, ladder); a one-line error when `mome calibrate` has not run."""
    from mome.errors import UserError

    path = run_dir / CALIBRATION_FILE
    verify_checksum(path, "calibration")
    calibration = read_json(path)
    threshold = calibration.get("threshold", "missing")
    if not isinstance(threshold, (int, float, type(None))) or "ladder" not in calibration:
        raise UserError(f"{path}: no calibration; run `mome calibrate {run_dir}` first")
    calibration["threshold"] = math.inf if threshold is None else float(threshold)
    return calibration


def policy_results(
    records: list[JsonObject],
    combinations: Sequence[RateCombination],
    snrs: list[str],
    calibration: JsonObject,
    seconds: dict[str, float],
) -> tuple[PolicyScores, dict[str, float | None]]:
    """The calibrated cascade scored at every SNR, and its measured seconds per utterance at each SNR. The times
    stay apart: results.json holds no timings."""
    tokens = {c.key: c.tokens_per_second for c in combinations}
    rungs, threshold = calibration["ladder"], calibration["threshold"]
    scores = {snr: score(records, snr, rungs, tokens, threshold, seconds) for snr in snrs}
    policy = PolicyScores(_finite(threshold), tuple(rungs), scores)
    return policy, {snr: s.seconds_per_utterance for snr, s in scores.items()}


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value
