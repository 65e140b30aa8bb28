"""The Python API: a trained run as an object that transcribes clips at a chosen rate or budget.

    import mome
    model = mome.load("demo_out/runs/mome")
    result = model.transcribe(video="clip.mp4", rates=(16, 5))     # or budget="auto" / "tokens=200"
    result.text, result.rates, result.modalities, result.seconds

    results = model.transcribe_many(videos=[a, b, c], budget="auto")   # several clips, decoded in batches

`budget="auto"` runs the calibrated cascade (`mome calibrate RUN` first; `mome.evaluation.cascade`): the
coarsest rung first, finer ones while the hypothesis' confidence is below the threshold. Decoding is batched
(`decode.batch_size` rows per generate call, `AVSRModel.generate_rows`): `transcribe_many` decodes every clip
at its first rung, then the clips not yet confident together at the next; `transcribe_each` decodes one clip's
combinations side by side. A clip's result does not depend on the batch it was decoded in. `budget="tokens=N"`
picks the finest combination whose LLM input tokens for this clip fit in N; `budget="ms=N"` the finest whose
decode time per utterance, as the run's newest `mome eval` measured it on this machine, fits in N ms. A clip without a usable
modality falls back (unified model) or raises `MediaError` naming the problem (`mome.inference.clip`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mome.config import (
    Combination,
    CompressionConfig,
    Config,
    Override,
    combination_key,
    combinations,
    parse_combination,
)
from mome.data.collate import to_device
from mome.errors import UserError
from mome.inference.inputs import Clip, clip_seconds, combination_for, load_clip, uses
from mome.precision import autocast

if TYPE_CHECKING:
    from mome.models.avsr import AVSRModel, Features


@dataclass
class Transcript:
    text: str
    rates: str
    """The rate combination of the text, keyed like `a16_v5` (`a16`: audio only)."""
    modalities: tuple[str, ...]
    """What the model read: ("audio", "video"), or the one a unified model fell back to."""
    tokens: float
    """LLM input (A/V) tokens this clip cost, over every combination decoded (a cascade may decode several)."""
    tried: list[str]
    """Every combination decoded, in order (one, unless a cascade went on to finer ones)."""
    confidence: float
    """Mean log-probability of the text's tokens."""
    duration: float
    """Length of the clip in seconds."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Time of each stage: read, face (raw videos), encode, decode (this clip's share of the batched generate
    calls it was in: each call's time over its rows)."""
    problems: dict[str, str] = field(default_factory=dict)
    """Why a modality was left out."""


def parse_budget(budget: str) -> tuple[str, float]:
    """`auto` -> ("auto", nan); `tokens=200` -> ("tokens", 200.0); `ms=40` -> ("ms", 40.0)."""
    if budget == "auto":
        return "auto", math.nan
    kind, _, value = budget.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind not in ("tokens", "ms") or not number > 0:
        raise UserError(f"budget {budget!r}: expected 'auto' (the calibrated cascade), 'tokens=N' or 'ms=N' (N > 0)")
    return kind, number


def measured_decode_ms(run_dir: Path | None) -> dict[str, float]:
    """Decode time per utterance of each rate combination, in ms, as the run's newest evaluation measured it
    on this machine (`<run>/eval/*/decode_times.json`); {} when it has none."""
    from mome.evaluation.results import DecodeTimes

    files = sorted((run_dir / "eval").glob("*/decode_times.json"), key=lambda f: f.stat().st_mtime) if run_dir else []
    for path in reversed(files):
        if seconds := DecodeTimes.read(path).seconds_per_utterance:  # empty when absent or cut short by a kill
            return {k: 1000 * v for k, v in seconds.items()}
    return {}


class Recognizer:
    """A loaded model with its config and run directory (where its calibration lives)."""

    def __init__(self, model: AVSRModel, cfg: Config, run_dir: Path | None, device: str | torch.device = "cpu") -> None:
        from mome.evaluation.evaluate import tokens_per_second

        self.model, self.cfg, self.run_dir, self.device = model.eval(), cfg, run_dir, device
        self.precision = model.prepare_decoding(cfg.decode, device)  # bf16 or int8 weights where they apply
        self.tokens_per_second = {combination_key(c): tokens_per_second(model, c) for c in model.combinations}

    @property
    def combinations(self) -> list[str]:
        return [combination_key(c) for c in combinations(self.cfg.model.compression)]

    def transcribe(
        self,
        video: str | Path | None = None,
        audio: str | Path | None = None,
        rates: Combination | str | None = None,
        budget: str | None = None,
        input_kind: str = "auto",
    ) -> Transcript:
        """The transcript of one clip at `rates` (default: the finest), or as `budget` decides."""
        return self.transcribe_many([video], [audio], rates, budget, input_kind)[0]

    def transcribe_many(
        self,
        videos: Sequence[str | Path | None] | None = None,
        audios: Sequence[str | Path | None] | None = None,
        rates: Combination | str | None = None,
        budget: str | None = None,
        input_kind: str = "auto",
    ) -> list[Transcript]:
        """The transcripts of several clips (`videos[i]` with `audios[i]`; either list may be left out or hold
        None), as `transcribe` gives each, decoded `decode.batch_size` rows per generate call: a cascade
        decodes every clip at its first rung, then the clips still below the threshold together at the next."""
        if rates is not None and budget is not None:
            raise UserError("give rates or a budget, not both")
        pairs = _pairs(videos, audios)
        comp = self.cfg.model.compression
        requested = _parse_rates(rates, comp) if rates is not None else None
        clips = [self._read(video, audio, input_kind) for video, audio in pairs]
        ladders = [self._ladder(clip, requested, budget) for clip, _ in clips]
        return self._decode(clips, ladders)

    @torch.no_grad()
    def transcribe_each(
        self, video: str | Path | None = None, audio: str | Path | None = None, input_kind: str = "auto"
    ) -> tuple[list[Transcript], str | None]:
        """The clip at every rate combination its modalities allow (encoded once, decoded side by side in
        batches), finest first, and the combination the calibrated cascade would answer with (None without
        `calibration.json`)."""
        from mome.evaluation.cascade import stop
        from mome.runs import CALIBRATION_FILE

        comp = self.cfg.model.compression
        clip, seconds = self._read(video, audio, input_kind)
        combos = sorted(
            {combination_for(comp, clip.modalities, c) for c in self.model.combinations},
            key=lambda c: (-self.tokens_per_second[combination_key(c)], self.model.combinations.index(c)),
        )
        length = clip_seconds(clip.batch)
        with autocast(self.precision.precision, self.device):
            features = self._encode(clip, seconds)
            decoded = self._decode_rows([(features, combo) for combo in combos])
        results = []
        for combo, (text, confidence, share) in zip(combos, decoded):
            key = combination_key(combo)
            results.append(
                Transcript(
                    text=text,
                    rates=key,
                    modalities=clip.modalities,
                    tokens=self.tokens_per_second[key] * length,
                    tried=[key],
                    confidence=confidence,
                    duration=length,
                    problems=clip.problems,
                    seconds={**seconds, "decode": share},
                )
            )
        chosen = None
        if self.run_dir is not None and (self.run_dir / CALIBRATION_FILE).is_file():
            rungs, threshold = self._cascade(clip)
            ladder = [combination_key(c) for c in rungs]
            confidences = {r.rates: r.confidence for r in results}
            chosen = ladder[stop(confidences, ladder, threshold)]
        return results, chosen

    def _read(
        self, video: str | Path | None, audio: str | Path | None, input_kind: str
    ) -> tuple[Clip, dict[str, float]]:
        """The clip as model inputs (`inputs.load_clip`), and the seconds of reading it (and its faces)."""
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        clip = load_clip(
            Path(video) if video else None,
            Path(audio) if audio else None,
            self.cfg.model.compression.task,
            self.cfg.data.crop_size,
            input_kind,
            seconds,
            self.cfg.data.av_tolerance_frames,
        )
        seconds["read"] = time.perf_counter() - start - seconds.get("face", 0.0)
        return clip, seconds

    def _encode(self, clip: Clip, seconds: dict[str, float]) -> Features:
        """The frozen encoders' features of the clip (under the caller's autocast), timed into `seconds`."""
        start = time.perf_counter()
        features = self.model.encode(to_device(clip.batch, self.device))
        seconds["encode"] = time.perf_counter() - start
        return features

    def _ladder(self, clip: Clip, requested: Combination | None, budget: str | None) -> tuple[list[Combination], float]:
        """(combinations to decode in order, confidence threshold to stop at)."""
        comp = self.cfg.model.compression
        if budget is None:
            return [combination_for(comp, clip.modalities, requested)], math.inf
        kind, value = parse_budget(budget)
        fitting = {combination_for(comp, clip.modalities, c) for c in self.model.combinations}
        fitting = {c for c in fitting if uses(c) == clip.modalities}  # everything the clip has
        by_cost = sorted(fitting, key=lambda c: self.tokens_per_second[combination_key(c)])
        if kind == "tokens":
            length = clip_seconds(clip.batch)
            fits = [c for c in by_cost if self.tokens_per_second[combination_key(c)] * length <= value]
            if not fits:
                cheapest = by_cost[0]
                need = self.tokens_per_second[combination_key(cheapest)] * length
                raise UserError(
                    f"budget {budget!r}: even {combination_key(cheapest)} needs {need:.0f} tokens for "
                    f"this {length:.1f} s clip"
                )
            return [fits[-1]], math.inf
        if kind == "ms":
            measured = measured_decode_ms(self.run_dir)
            if not measured:
                raise UserError(
                    f"budget {budget!r} needs decode times measured on this machine: run `mome eval "
                    f"{self.run_dir} --labels ...` first (it writes eval/*/decode_times.json)"
                )
            fits = [c for c in by_cost if measured.get(combination_key(c), math.inf) <= value]
            if not fits:
                raise UserError(
                    f"budget {budget!r}: no rate combination decodes that fast here (measured: "
                    + ", ".join(f"{k} {v:.0f} ms" for k, v in measured.items())
                    + ")"
                )
            return [fits[-1]], math.inf
        if self.run_dir is None:
            raise UserError("budget 'auto' needs the run directory (its calibration.json)")
        return self._cascade(clip)

    def _cascade(self, clip: Clip) -> tuple[list[Combination], float]:
        """The calibrated ladder, each rung mapped onto the modalities the clip has (a unified model's
        fallback: a16_v5 -> a16), and its threshold."""
        from mome.evaluation.cascade import load_calibration

        comp = self.cfg.model.compression
        calibration = load_calibration(self.run_dir)  # type: ignore[arg-type]
        rungs: list[Combination] = []
        for key in calibration["ladder"]:
            combo = combination_for(comp, clip.modalities, parse_combination(key, comp))
            if combo not in rungs:
                rungs.append(combo)
        return rungs, calibration["threshold"]

    @torch.no_grad()
    def _decode(
        self, clips: list[tuple[Clip, dict[str, float]]], ladders: list[tuple[list[Combination], float]]
    ) -> list[Transcript]:
        """Each clip up its ladder, rung by rung: at each rung, every clip still going is decoded in batches;
        a clip stops at its last rung or once its confidence reaches its threshold."""
        answers: list[tuple[str, float]] = [("", math.nan)] * len(clips)
        tried: list[list[str]] = [[] for _ in clips]
        decode_s = [0.0] * len(clips)
        with autocast(self.precision.precision, self.device):
            features = [self._encode(clip, seconds) for clip, seconds in clips]
            going, rung = list(range(len(clips))), 0
            while going:
                decoded = self._decode_rows([(features[i], ladders[i][0][rung]) for i in going])
                for i, (text, confidence, share) in zip(going, decoded):
                    answers[i], decode_s[i] = (text, confidence), decode_s[i] + share
                    tried[i].append(combination_key(ladders[i][0][rung]))
                rungs_left = [i for i in going if rung + 1 < len(ladders[i][0])]
                going, rung = [i for i in rungs_left if not answers[i][1] >= ladders[i][1]], rung + 1
        results = []
        for (clip, seconds), (text, confidence), keys, spent in zip(clips, answers, tried, decode_s):
            length = clip_seconds(clip.batch)
            results.append(
                Transcript(
                    text=text,
                    rates=keys[-1],
                    modalities=clip.modalities,
                    confidence=confidence,
                    tried=keys,
                    duration=length,
                    tokens=sum(self.tokens_per_second[k] for k in keys) * length,
                    seconds={**seconds, "decode": spent},
                    problems=clip.problems,
                )
            )
        return results

    def _decode_rows(self, rows: list[tuple[Features, Combination]]) -> list[tuple[str, float, float]]:
        """(text, confidence, share of its generate call's seconds) of each (features, combination) row,
        `decode.batch_size` rows per call (`AVSRModel.generate_rows`)."""
        out: list[tuple[str, float, float]] = []
        size = self.cfg.decode.batch_size
        for first in range(0, len(rows), size):
            batch = rows[first : first + size]
            start = time.perf_counter()
            texts, confidences = self.model.generate_rows(batch, self.cfg.decode)
            share = (time.perf_counter() - start) / len(batch)
            out += [(text, confidence, share) for text, confidence in zip(texts, confidences)]
        return out


def _pairs(
    videos: Sequence[str | Path | None] | None, audios: Sequence[str | Path | None] | None
) -> list[tuple[str | Path | None, str | Path | None]]:
    """(video, audio) of each clip; a one-line error when the lists disagree in length or a clip has neither."""
    if isinstance(videos, (str, Path)) or isinstance(audios, (str, Path)):
        raise UserError("transcribe_many takes lists of paths (videos=[...], audios=[...]); one clip: transcribe")
    videos = list(videos) if videos is not None else [None] * len(audios or [])
    audios = list(audios) if audios is not None else [None] * len(videos)
    if len(videos) != len(audios):
        raise UserError(f"{len(videos)} videos and {len(audios)} audio files: give one of each per clip (or None)")
    if any(v is None and a is None for v, a in zip(videos, audios)):
        raise UserError("give a clip: a video (its audio track is used too) and/or an audio file")
    return list(zip(videos, audios))


def _parse_rates(rates: Combination | str, comp: CompressionConfig) -> Combination:
    text = rates if isinstance(rates, str) else ",".join(str(r) for r in rates if r is not None)
    if not isinstance(rates, str) and comp.task == "any" and None in rates:  # (16, None): audio only
        text = combination_key(rates)
    return parse_combination(text, comp)


def from_payload(
    payload: dict[str, Any], run_dir: Path | None, overrides: Sequence[Override] | None = None, device: str = "cpu"
) -> Recognizer:
    from mome.runs.load import model_from_payload

    model, cfg = model_from_payload(payload, overrides, device=device)
    return Recognizer(model, cfg, run_dir, device)


def load(
    run: str | Path, overrides: list[str] | None = None, device: str = "cpu", check_base_models: bool = True
) -> Recognizer:
    """A trained run (its newest checkpoint), a checkpoint file or an export, ready to transcribe.
    `check_base_models=False`: load even onto other base models, or an export without base_models.json."""
    from mome.runs.base_models import unchecked_base_models
    from mome.runs.checkpoint import run_directory
    from mome.runs.load import load_checkpoint, resolve_checkpoint

    with unchecked_base_models(not check_base_models):
        checkpoint = resolve_checkpoint(run)
        return from_payload(load_checkpoint(checkpoint), run_directory(checkpoint), overrides, device)
