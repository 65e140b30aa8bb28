"""What an evaluation produces, typed: `evaluate` builds an `EvaluationResult` once and every report reads it.

    EvaluationResult                  one decoded label file (results.json)
        decode: DecodeSettings        how it was decoded
        combinations: RateCombination the rates decoded, each with its LLM input tokens per second of speech
        wer[group][key][snr]: WerCell corpus error counts of a group at one combination and SNR
        policies[name]: PolicyScores  a policy scored beside the fixed rates (the calibrated cascade)

`to_json` writes the dict that results.json holds, key for key in the order it always had, so the file's bytes
do not change; `from_json` reads that dict back, from files of earlier versions too (fields added later
take the value those versions meant).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from mome.config import Combination
from mome.evaluation.wer import ErrorCounts, total
from mome.io import JsonObject, read_json

NORMALISER = (
    "mome.evaluation.wer.normalize: NFKC, lowercase, punctuation -> space, apostrophes only inside words, "
    "whitespace collapsed, digits unchanged"
)
"""What results.json says about how references and hypotheses were normalised before counting."""

A = TypeVar("A")
B = TypeVar("B")
WerTable = Mapping[str, Mapping[str, Mapping[str, "WerCell"]]]
"""group -> rate combination key -> SNR label -> cell."""
WerPercent = dict[str, dict[str, float | None]]
"""rate combination key -> SNR label -> corpus WER in % of group `all` (`EvaluationResult.wer_percent`)."""


@dataclass(frozen=True)
class WerCell:
    """Corpus error counts of one group at one rate combination and SNR: one number of results.md."""

    wer: float
    """Errors per reference word, rounded to 6 decimals as results.json stores it."""
    errors: int
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int
    utterances: int
    """Utterances decoded: 0 where the combination was not decoded at that SNR (a video-only one in babble)."""

    @classmethod
    def of(cls, counts: Sequence[ErrorCounts]) -> WerCell:
        """The cell of these utterances' counts."""
        c = total(counts)
        return cls(round(c.wer, 6), c.errors, c.ref_words, c.substitutions, c.deletions, c.insertions, len(counts))

    @property
    def percent(self) -> float | None:
        """WER in % (2 decimals), None where nothing was decoded: the number the reports compare."""
        return round(100 * self.wer, 2) if self.utterances else None

    def to_json(self) -> dict[str, float | int]:
        return {
            "wer": self.wer,
            "errors": self.errors,
            "ref_words": self.ref_words,
            "sub": self.substitutions,
            "del": self.deletions,
            "ins": self.insertions,
            "utterances": self.utterances,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> WerCell:
        return cls(
            data["wer"], data["errors"], data["ref_words"], data["sub"], data["del"], data["ins"], data["utterances"]
        )


@dataclass(frozen=True)
class RateCombination:
    """A rate combination that was decoded, with its cost: LLM input tokens per second of speech."""

    key: str
    audio_rate: int | None
    video_rate: int | None
    tokens_per_second: float

    @property
    def rates(self) -> Combination:
        return self.audio_rate, self.video_rate

    def to_json(self) -> dict[str, str | int | float | None]:
        return {
            "key": self.key,
            "audio_rate": self.audio_rate,
            "video_rate": self.video_rate,
            "tokens_per_second": self.tokens_per_second,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> RateCombination:
        return cls(data["key"], data["audio_rate"], data["video_rate"], data["tokens_per_second"])


@dataclass(frozen=True)
class DecodeSettings:
    """How the hypotheses were decoded: what a WER cannot be compared without."""

    num_beams: int
    max_new_tokens: int
    length_penalty: float
    precision: str | None
    """What ran (`auto` resolved); None in results written before it was recorded (fp32 then)."""
    precision_reason: str | None
    quantize: str = "none"

    def to_json(self) -> dict[str, str | int | float | None]:
        return {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "length_penalty": self.length_penalty,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "quantize": self.quantize,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> DecodeSettings:
        return cls(
            data["num_beams"],
            data["max_new_tokens"],
            data["length_penalty"],
            data.get("precision"),
            data.get("precision_reason"),
            data.get("quantize", "none"),
        )


@dataclass(frozen=True)
class CascadeScore:
    """A cascade's WER and cost over the utterances of one SNR (`evaluation.cascade`)."""

    wer: float
    tokens_per_second: float
    """Mean LLM input tokens per second of speech over every rung tried."""
    stops: Mapping[str, float]
    """Share of utterances that stopped at each rung."""
    seconds_per_utterance: float | None = None
    """Measured decode time of the rungs tried; kept out of results.json, whose bytes are reproducible."""

    def to_json(self) -> dict[str, float | dict[str, float]]:
        return {
            "wer": round(self.wer, 6),
            "tokens_per_second": round(self.tokens_per_second, 4),
            "stops": {k: round(v, 4) for k, v in self.stops.items()},
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> CascadeScore:
        return cls(data["wer"], data["tokens_per_second"], dict(data["stops"]))


@dataclass(frozen=True)
class PolicyScores:
    """A calibrated policy scored at every SNR of an evaluation: results.json's `policies[name]`."""

    threshold: float | None
    """None: no cascade was cheaper at the target, the finest rung alone decodes."""
    ladder: tuple[str, ...]
    by_snr: Mapping[str, CascadeScore]

    def to_json(self) -> JsonObject:
        return {
            "threshold": self.threshold,
            "ladder": list(self.ladder),
            **{snr: s.to_json() for snr, s in self.by_snr.items()},
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> PolicyScores:
        scores = {snr: CascadeScore.from_json(v) for snr, v in data.items() if snr not in ("threshold", "ladder")}
        return cls(data["threshold"], tuple(data["ladder"]), scores)


@dataclass(frozen=True)
class DecodeTimes:
    """decode_times.json: seconds of `model.generate` per utterance at each rate combination (and of each
    policy, per SNR), with what that speed depends on. Written by every evaluation on its machine; read by time
    budgets (`ms=N`) and the reports. Kept apart from results.json, which holds no timings."""

    seconds_per_utterance: dict[str, float] = field(default_factory=dict)
    utterances: dict[str, int] = field(default_factory=dict)
    batch_size: int | None = None
    num_beams: int | None = None
    precision: str | None = None
    quantize: str | None = None
    threads: int | None = None
    policies: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Policy -> SNR -> seconds per utterance (`cascade`), when the evaluation scored one."""

    @classmethod
    def read(cls, path: str | Path) -> DecodeTimes:
        """The file's times; empty when it is absent or cut short by a kill (`read_json`)."""
        data = read_json(path)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def to_json(self) -> JsonObject:
        data = asdict(self)
        if not self.policies:
            del data["policies"]
        return data


_FIELDS = (
    "name",
    "task",
    "normaliser",
    "decode",
    "eval_noise_seed",
    "snrs",
    "combinations",
    "groups",
    "wer",
    "skipped",
    "label_problems",
    "labels",
    "root",
    "policies",
)
"""results.json's own keys, in their order; every other key is the caller's `info`, written first."""


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one evaluation decoded and counted (results.json), with no timings: reproducible bytes."""

    name: str
    task: str
    decode: DecodeSettings
    eval_noise_seed: int
    snrs: tuple[str, ...]
    """Column labels (`clean`, `0`, `-5`), in the order decoded."""
    combinations: tuple[RateCombination, ...]
    groups: tuple[str, ...]
    """`all` first, then `grammar=<g>` and `engine=<e>` when the corpus metadata has them."""
    wer: WerTable
    skipped: Mapping[str, str]
    """Utterances left out (`skip_bad`), with the reason each could not be read."""
    label_problems: tuple[str, ...]
    labels: str
    root: str
    policies: Mapping[str, PolicyScores] = field(default_factory=dict)
    info: JsonObject = field(default_factory=dict)
    """The caller's extra fields (checkpoint, overrides, source ...), written before the others."""
    normaliser: str = NORMALISER

    def __post_init__(self) -> None:
        clash = set(self.info) & set(_FIELDS)
        if clash:
            raise ValueError(f"info may not set results.json's own fields: {', '.join(sorted(clash))}")

    def cell(self, key: str, snr: str, group: str = "all") -> WerCell | None:
        """The cell of `group` at combination `key` and `snr`; None where the table has none."""
        return self.wer.get(group, {}).get(key, {}).get(snr)

    def wer_percent(self) -> WerPercent:
        """Corpus WER in % (2 decimals) of group `all` per rate combination and SNR; None where no utterance was
        decoded. The numbers the demo's and reproduce's reports compare."""
        return {
            c.key: {snr: cell.percent if (cell := self.cell(c.key, snr)) else None for snr in self.snrs}
            for c in self.combinations
        }

    def tokens_per_second(self) -> dict[str, float]:
        """{combination key: LLM input tokens per second of speech}."""
        return {c.key: c.tokens_per_second for c in self.combinations}

    def decodes(self) -> int:
        """Utterances decoded over every combination and SNR (group `all`)."""
        return sum(cell.utterances for cells in self.wer.get("all", {}).values() for cell in cells.values())

    def to_json(self) -> JsonObject:
        """The dict of results.json, keys in the order they were always written."""
        out: JsonObject = {
            **self.info,
            "name": self.name,
            "task": self.task,
            "normaliser": self.normaliser,
            "decode": self.decode.to_json(),
            "eval_noise_seed": self.eval_noise_seed,
            "snrs": list(self.snrs),
            "combinations": [c.to_json() for c in self.combinations],
            "groups": list(self.groups),
            "wer": _map_cells(self.wer, WerCell.to_json),
            "skipped": dict(self.skipped),
            "label_problems": list(self.label_problems),
            "labels": self.labels,
            "root": self.root,
        }
        if self.policies:
            out["policies"] = {name: p.to_json() for name, p in self.policies.items()}
        return out

    @classmethod
    def from_json(cls, data: JsonObject) -> EvaluationResult:
        """Read a results.json dict (`to_json`'s, or an earlier version's)."""
        return cls(
            name=data["name"],
            task=data["task"],
            decode=DecodeSettings.from_json(data["decode"]),
            eval_noise_seed=data["eval_noise_seed"],
            snrs=tuple(data["snrs"]),
            combinations=tuple(RateCombination.from_json(c) for c in data["combinations"]),
            groups=tuple(data["groups"]),
            wer=_map_cells(data["wer"], WerCell.from_json),
            skipped=dict(data.get("skipped", {})),
            label_problems=tuple(data.get("label_problems", ())),
            labels=data["labels"],
            root=data["root"],
            policies={name: PolicyScores.from_json(p) for name, p in data.get("policies", {}).items()},
            info={k: v for k, v in data.items() if k not in _FIELDS},
            normaliser=data.get("normaliser", NORMALISER),
        )


def _map_cells(
    table: Mapping[str, Mapping[str, Mapping[str, A]]], fn: Callable[[A], B]
) -> dict[str, dict[str, dict[str, B]]]:
    """`fn` of every cell of a group -> key -> SNR table, the nesting and order kept."""
    return {
        g: {k: {s: fn(cell) for s, cell in cells.items()} for k, cells in by_key.items()} for g, by_key in table.items()
    }


def wer_table(
    cells: Mapping[tuple[str, str, str], Sequence[ErrorCounts]],
    groups: Iterable[str],
    keys: Sequence[str],
    snrs: Sequence[str],
) -> dict[str, dict[str, dict[str, WerCell]]]:
    """group -> key -> SNR -> the cell of the utterance counts under (group, key, SNR) in `cells` (an empty
    cell where there are none)."""
    return {g: {k: {s: WerCell.of(cells.get((g, k, s), [])) for s in snrs} for k in keys} for g in groups}
