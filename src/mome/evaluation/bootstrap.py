"""Bootstrap intervals for differences between WERs (or any ratio of sums) of several methods, over training
seeds and test utterances, and the verdict each interval gives a claim.

    a cell: one method at one rate combination and SNR; per seed and test utterance a numerator (word errors)
            and a denominator (reference words)
    a draw: the utterances resampled with replacement, one resample shared by every cell; each method's seeds
            resampled with replacement, one resample shared by its cells (its rates and SNRs)
            -> each cell's value: its numerator summed over the drawn seeds and utterances / its denominator
               summed the same way (for WER: total errors / total reference words)
    a difference: a linear combination of cells (WER(MoME) - WER(MTSK), a difference of degradations, ...);
            its estimate is the same combination on all the data, its 95% interval the 2.5th and 97.5th
            percentiles over the draws
    a verdict: `holds` when the interval lies on the side of zero the claim says, `does not hold` when it lies
            on the other side, `inconclusive` when it contains zero

Draws are seeded and deterministic: the utterance resample comes from `seed`, each method's seed resample from
`seed` and the method's name, so adding a method changes no other method's draws.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Verdict = Literal["holds", "does not hold", "inconclusive"]
Side = Literal["negative", "positive"]
"""The sign of the difference the claim says: `negative` for "A's WER is below B's" as WER(A) - WER(B)."""

DRAWS = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Samples:
    """One cell's per-seed, per-utterance numerators and denominators, and the method whose seeds they are."""

    numerator: np.ndarray  # [seeds, utterances] word errors
    denominator: np.ndarray  # [seeds, utterances] reference words
    method: str

    def __post_init__(self) -> None:
        if self.numerator.ndim != 2 or self.numerator.shape != self.denominator.shape or not self.numerator.size:
            raise ValueError(
                f"{self.method}: numerator {self.numerator.shape} and denominator "
                f"{self.denominator.shape} must be the same non-empty [seeds, utterances]"
            )

    @property
    def value(self) -> float:
        """The ratio on all the data: every seed and utterance once."""
        return float(self.numerator.sum() / self.denominator.sum())


@dataclass(frozen=True)
class Interval:
    """A difference's estimate and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    def verdict(self, side: Side) -> Verdict:
        """`holds` if the interval lies on `side` of zero, `does not hold` on the other, else `inconclusive`."""
        below, above = self.high < 0, self.low > 0
        if below or above:
            return "holds" if below == (side == "negative") else "does not hold"
        return "inconclusive"

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (100: WER fractions as percentage points)."""
        return Interval(self.estimate * factor, self.low * factor, self.high * factor)

    def text(self, digits: int = 1) -> str:
        """`-2.3 [-4.0, -0.6]`."""
        return f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """A claim made of several differences: `does not hold` if one does not, `holds` if every one holds (and there
    is at least one), else `inconclusive`."""
    verdicts = list(verdicts)
    if "does not hold" in verdicts:
        return "does not hold"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


class Bootstrap:
    """The draws of every cell (module docstring), computed once; `interval` of any difference between cells."""

    def __init__(self, cells: Mapping[Hashable, Samples], draws: int = DRAWS, seed: int = 0) -> None:
        if not cells:
            raise ValueError("a bootstrap needs at least one cell")
        utterances = {s.numerator.shape[1] for s in cells.values()}
        if len(utterances) != 1:
            raise ValueError(f"every cell needs the same test utterances, got counts {sorted(utterances)}")
        seeds: dict[str, int] = {}
        for s in cells.values():
            if seeds.setdefault(s.method, s.numerator.shape[0]) != s.numerator.shape[0]:
                raise ValueError(f"{s.method}: its cells have different numbers of seeds")
        (n,) = utterances
        weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=draws).astype(float)  # [D, U]
        seed_weights = {m: _seed_weights(m, k, draws, seed) for m, k in seeds.items()}  # [D, S] each
        self.cells = dict(cells)
        self.draws: dict[Hashable, np.ndarray] = {}  # [D] each cell's value per draw
        for key, s in cells.items():
            c = seed_weights[s.method]
            numerator = np.einsum("ds,su,du->d", c, s.numerator.astype(float), weights)
            denominator = np.einsum("ds,su,du->d", c, s.denominator.astype(float), weights)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.draws[key] = numerator / denominator

    def interval(self, terms: Mapping[Hashable, float], level: float = LEVEL) -> Interval:
        """The interval of sum_cell coefficient x value(cell), e.g. {("mome", "a4_v2", "clean"): 1, ("mtsk-ms",
        "a4_v2", "clean"): -1}. Raises KeyError for a cell the bootstrap was not given."""
        estimate = sum(c * self.cells[k].value for k, c in terms.items())
        values = sum(c * self.draws[k] for k, c in terms.items())
        low, high = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
        return Interval(float(estimate), float(low), float(high))


def _seed_weights(method: str, seeds: int, draws: int, seed: int) -> np.ndarray:
    """[draws, seeds] how often each seed of `method` is drawn, from `seed` and the method's name."""
    rng = np.random.default_rng([seed, zlib.crc32(method.encode())])
    return rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws).astype(float)


# ------------------------------------------------------------------------------------------ WER cells
Counts = dict[tuple[str, str], dict[str, tuple[int, int]]]
"""(rate combination, SNR) -> utterance id -> (word errors, reference words): one evaluated run."""


def read_counts(path: str | Path) -> Counts:
    """The per-utterance edit counts of an evaluation's `hypotheses.jsonl` (`evaluation.evaluate`)."""
    out: Counts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out.setdefault((r["rates"], r["snr"]), {})[r["id"]] = (r["sub"] + r["del"] + r["ins"], r["ref_words"])
    return out


def wer_samples(method: str, runs: list[Counts], combo: str, snr: str, utterances: list[str]) -> Samples | None:
    """The WER cell of `method` (one `Counts` per seed) at `combo` and `snr`, over `utterances` in that order;
    None when a run did not decode that cell. Raises ValueError when a run lacks one of the utterances."""
    rows = []
    for i, run in enumerate(runs):
        cell = run.get((combo, snr))
        if cell is None:
            return None
        missing = [u for u in utterances if u not in cell]
        if missing:
            raise ValueError(
                f"{method} (seed #{i}) at {combo} {snr}: no hypothesis for {missing[0]} "
                f"({len(missing)} utterances missing): every run must decode the same test set"
            )
        rows.append([cell[u] for u in utterances])
    counts = np.array(rows, dtype=float)  # [S, U, 2]
    return Samples(counts[..., 0], counts[..., 1], method)
