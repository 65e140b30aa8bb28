"""Evaluation: decode a label file at every rate combination x SNR and write WER tables, a plot and hypotheses.

    for SNR in snrs:                      dataset with babble at SNR (seeded per utterance: data/noise.py)
        for batch in DataLoader:          fixed order, `cfg.data.loader_workers` workers
            features = model.encode(batch)            encoders run once per batch and SNR (or cached features)
            for combination in combos:    model.generate(features, combination) -> hypotheses

Encoding and generation run under the autocast of `decode.precision` (`auto`: bf16 where the device has native
bf16 matmul, else fp32; `mome.precision`), with the frozen LLM laid out for it (bf16 weights, or int8 linear
layers under `decode.quantize: int8`: `AVSRModel.prepare_decoding`), recorded in results.json under "decode".

`evaluate` returns an `EvaluationResult` (`mome.evaluation.results`), which the reports read; outputs in `out_dir`:
    results.json      counts and WER per group x combination x SNR, plus everything needed to read them
                      (`EvaluationResult.to_json`); no timings or dates, so two runs of the same checkpoint give
                      identical bytes
    results.md        one table per group (rows: combinations, columns: SNR), WER in %
    wer_vs_tokens.png WER against LLM input tokens per second of speech, one line per SNR (group "all")
    hypotheses.jsonl  one line per (SNR, combination, utterance): reference, hypothesis, edit counts
    decode_times.json seconds of `model.generate` per utterance at each combination (`DecodeClock`)

Groups: `all`, plus `grammar=<g>` and `engine=<e>` when the corpus metadata has them (the synthetic corpus).

LLM input tokens per second of speech (`tokens_per_second`): the audio and video tokens that one second of
speech puts into the LLM at a combination, `audio_frame_rate / audio_rate + video_frame_rate / video_rate`,
with the encoders' frame rates (Whisper 50 Hz, video 25 fps): 50/16 + 25/5 = 8.125 for (16, 5). The prompt
and the transcript are not counted: they do not grow with the length of the speech.

Bad utterances (a label row that cannot be parsed, media that is missing, empty or undecodable) make the
evaluation fail with a `UserError` naming the first one, because a WER over a silently smaller test set is
not comparable with other results. With `skip_bad=True` they are left out instead, and listed with their
reason under `skipped` in results.json; the WER is then over the utterances that could be read.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mome.config import SNR_RANGE_DB, Combination, Config, DecodeConfig, absolute_path, combination_key, plausible_snr
from mome.constants import AVHUBERT_FRAME_RATE, WHISPER_FRAME_RATE
from mome.data.collate import collate, to_device
from mome.data.dataset import AVDataset
from mome.data.labels import media_path
from mome.errors import UserError
from mome.evaluation import plots
from mome.evaluation.cascade import policy_results
from mome.evaluation.results import (
    DecodeSettings,
    DecodeTimes,
    EvaluationResult,
    PolicyScores,
    RateCombination,
    WerTable,
    wer_table,
)
from mome.evaluation.wer import ErrorCounts, normalize, total, utterance_errors
from mome.features.cache import FeatureCache
from mome.features.dataset import make_dataset
from mome.io import JsonObject, atomic_write_text
from mome.models.avsr import AVSRModel, Features
from mome.precision import Resolved, autocast

log = logging.getLogger(__name__)
AUDIO_FRAME_RATE = WHISPER_FRAME_RATE  # if the encoder does not say
VIDEO_FRAME_RATE = AVHUBERT_FRAME_RATE  # if the encoder does not say
GROUP_KEYS = ("grammar", "engine")  # metadata fields that split the results


# ------------------------------------------------------------------------------------------ SNR / rates
def snr_label(snr: float | None) -> str:
    """`clean`, `0`, `-5`, `2.5`: the column name of an SNR."""
    if snr is None:
        return "clean"
    return str(int(snr)) if float(snr).is_integer() else str(snr)


def parse_snr(text: str) -> float | None:
    """`clean` (or `none`) -> None, else a number of dB (`check_snrs`: not NaN, not infinite)."""
    if text.strip().lower() in ("clean", "none"):
        return None
    try:
        snr = float(text)
    except ValueError:
        raise UserError(f"SNR {text!r}: expected a number of dB or 'clean'") from None
    check_snrs([snr])
    return snr


def check_snrs(snrs: list[float | None]) -> None:
    """Refuse what would decode garbage or a second clean column: NaN, inf, an SNR out of `SNR_RANGE_DB`."""
    low, high = SNR_RANGE_DB
    for snr in snrs:
        if not plausible_snr(snr):
            raise UserError(f"SNR {snr} dB: expected a number from {low:g} to {high:g} dB, or 'clean' for no noise")


def frame_rates(model: AVSRModel) -> tuple[float, float]:
    """Encoder frames per second (audio, video), as the encoders say, else Whisper's 50 Hz and 25 fps."""
    audio = getattr(model.audio_encoder, "frame_rate", AUDIO_FRAME_RATE)
    video = getattr(model.video_encoder, "frame_rate", VIDEO_FRAME_RATE)
    return audio, video


def tokens_per_second(model: AVSRModel, combo: Combination) -> float:
    """LLM input (A/V) tokens per second of speech at `combo` (definition in the module docstring)."""
    (audio_rate, video_rate), (audio_fps, video_fps) = combo, frame_rates(model)
    return (audio_fps / audio_rate if audio_rate else 0.0) + (video_fps / video_rate if video_rate else 0.0)


# ------------------------------------------------------------------------------------------ data
class _Tracked(Dataset):
    """`AVDataset` items in label order, with a failed item turned into {"id", "error"} instead of None.

    The dataset records failures in `dataset.bad`, but inside a worker process; the marker carries the
    reason back to the main process through the batch."""

    def __init__(self, dataset: AVDataset, limit: int | None) -> None:
        self.dataset = dataset
        self.size = len(dataset) if limit is None else min(limit, len(dataset))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        if item is None:
            rel = self.dataset.rows[index].rel_path
            return {"id": rel, "error": self.dataset.bad.get(rel, "unreadable")}
        return item


def collate_tracked(items: list[dict]) -> dict:
    """`collate` of the good items (None if there are none) plus the failed ones as {id: reason}."""
    failed = {it["id"]: it["error"] for it in items if "error" in it}
    return {"batch": collate([it for it in items if "error" not in it]), "failed": failed}


def _missing_media(dataset: AVDataset, modalities: tuple[str, ...], limit: int | None) -> dict[str, str]:
    """Media files that are absent or empty, found before any decoding starts (a cheap stat per file)."""
    out = {}
    for row in dataset.rows[:limit]:
        for modality, ext in (("video", ".mp4"), ("audio", ".wav")):
            path = media_path(dataset.root, row.rel_path, ext)
            if modality in modalities and (not path.is_file() or path.stat().st_size == 0):
                out[row.rel_path] = f"{path}: {'missing' if not path.is_file() else 'empty'} file"
    return out


def _check_inputs(dataset: AVDataset, modalities: tuple[str, ...], limit: int | None, skip_bad: bool) -> None:
    if len(dataset) == 0:
        first = f"; first: {dataset.label_problems[0]}" if dataset.label_problems else ""
        raise UserError(f"no usable rows in the label file ({len(dataset.label_problems)} malformed{first})")
    if skip_bad:
        return
    problems = dataset.label_problems + list(_missing_media(dataset, modalities, limit).values())
    if problems:
        raise UserError(f"{len(problems)} bad utterance(s), first: {problems[0]} (--skip-bad evaluates the rest)")


# ------------------------------------------------------------------------------------------ decoding
class DecodeClock:
    """Wall-clock seconds of `model.generate` per combination (pooling, projection and the LLM's decoding;
    not the encoders), over every batch and SNR. Kept out of results.json, whose bytes are reproducible."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.utterances: dict[str, int] = defaultdict(int)

    def generate(
        self, model: AVSRModel, features: Features, combo: Combination, decode: DecodeConfig
    ) -> tuple[list[str], list[float]]:
        start = time.perf_counter()
        hyps, confidences = model.generate_scored(features, combo, decode)
        key = combination_key(combo)
        self.seconds[key] += time.perf_counter() - start
        self.utterances[key] += len(hyps)
        return hyps, confidences

    def summary(self, decode: DecodeConfig, precision: Resolved) -> DecodeTimes:
        """Seconds per utterance at each combination, with what the speed depends on."""
        return DecodeTimes(
            seconds_per_utterance={k: self.seconds[k] / self.utterances[k] for k in self.seconds},
            utterances=dict(self.utterances),
            batch_size=decode.batch_size,
            num_beams=decode.num_beams,
            precision=precision.precision,
            quantize=decode.quantize,
            threads=torch.get_num_threads(),
        )


@dataclass
class _Record:
    snr: str
    combo: str
    id: str
    reference: str
    hypothesis: str
    groups: list[str]
    counts: ErrorCounts
    confidence: float
    """Mean log-probability of the hypothesis' tokens (`AVSRModel.generate_scored`): a cascade's signal."""

    def to_json(self) -> JsonObject:
        """One line of hypotheses.jsonl."""
        c = self.counts
        return {
            "snr": self.snr,
            "rates": self.combo,
            "id": self.id,
            "ref": self.reference,
            "hyp": self.hypothesis,
            "ref_norm": normalize(self.reference),
            "hyp_norm": normalize(self.hypothesis),
            "groups": self.groups,
            "sub": c.substitutions,
            "del": c.deletions,
            "ins": c.insertions,
            "ref_words": c.ref_words,
            "confidence": self.confidence,  # unrounded: calibration picks thresholds among these values
        }


@contextmanager
def _quiet(loggers: list[str]) -> Iterator[None]:
    """Silence the data loggers' per-utterance warnings: evaluation reports each bad utterance itself,
    once (as the error, or under `skipped` in results.json)."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _groups(meta: dict) -> list[str]:
    return ["all"] + [f"{k}={meta[k]}" for k in GROUP_KEYS if meta.get(k)]


def _decode_snr(
    model: AVSRModel,
    loader: DataLoader,
    combos: list[Combination],
    decode: DecodeConfig,
    precision: Resolved,
    snr: str,
    skip_bad: bool,
    skipped: dict[str, str],
    progress: bool,
    clock: DecodeClock,
) -> list[_Record]:
    records = []
    bar = tqdm(total=len(loader.dataset), desc=f"eval snr={snr}", unit="utt", disable=not progress)
    for item in loader:
        if item["failed"] and not skip_bad:
            bar.leave = False  # erase the bar: the error is the one line the user sees
            bar.close()
            rel, reason = next(iter(item["failed"].items()))
            raise UserError(f"bad utterance {rel}: {reason} (--skip-bad evaluates the rest)")
        skipped.update(item["failed"])
        batch = item["batch"]
        bar.update(len(item["failed"]))
        if batch is None:
            continue
        with autocast(precision.precision, precision.device):
            features = model.encode(to_device(batch, _device(model)))
            hyps_by_combo = [clock.generate(model, features, combo, decode) for combo in combos]
        for combo, (hyps, confidences) in zip(combos, hyps_by_combo):
            for rel, ref, hyp, meta, conf in zip(batch["ids"], batch["texts"], hyps, batch["metas"], confidences):
                counts = utterance_errors(ref, hyp)
                records.append(_Record(snr, combination_key(combo), rel, ref, hyp, _groups(meta), counts, conf))
        bar.update(len(batch["ids"]))
    bar.close()
    order = [combination_key(c) for c in combos]
    return sorted(records, key=lambda r: order.index(r.combo))  # stable: label order within a combination


def _device(model: AVSRModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate(
    model: AVSRModel,
    cfg: Config,
    labels: str | Path,
    root: str | Path,
    combos: list[Combination],
    snrs: list[float | None],
    decode: DecodeConfig | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    info: JsonObject | None = None,
    cascade: JsonObject | None = None,
) -> EvaluationResult:
    """Decode `labels` at every combination x SNR; return the results (written to `out_dir` if given).

    Args:
        labels: label CSV, absolute or relative to `root` (resolved here, once).
        combos: rate combinations the model was trained with (`config.parse_combination`).
        snrs: babble SNRs in dB, None = clean. A VSR model ignores them (no audio): only `clean` is run.
        decode: beams, lengths, batch size and precision; default `cfg.decode`.
        limit: the first N utterances of the label file only.
        skip_bad: leave out unreadable utterances instead of failing (module docstring).
        info: extra fields for results.json (checkpoint path, overrides ...).
        cascade: a calibration (`evaluation.cascade`): the cascade is scored beside the fixed rates
            (results.json "policies"; its measured time per utterance in decode_times.json).
    """
    check_snrs(snrs)
    root = Path(absolute_path(str(root)))
    labels = Path(absolute_path(str(labels), root))
    decode = decode or cfg.decode
    missing = set(cascade["ladder"]) - {combination_key(c) for c in combos} if cascade else set()
    if missing:
        raise UserError(
            f"the cascade decodes {', '.join(cascade['ladder'])}; add {', '.join(sorted(missing))} "  # type: ignore[index]
            "to --rates (or leave --rates out)"
        )
    precision = model.prepare_decoding(decode, _device(model))
    modalities = cfg.model.compression.modalities
    if "audio" not in modalities and any(s is not None for s in snrs):
        log.warning("task %s uses no audio: noise has no effect, evaluating clean only", cfg.model.compression.task)
        snrs = [None]
    model.eval()
    records: list[_Record] = []
    skipped: dict[str, str] = {}
    label_problems: list[str] = []
    cache = feature_cache(model, cfg, root)
    clock = DecodeClock()
    with _quiet(["mome.data.dataset", "mome.data.labels"]):
        for snr in snrs:
            dataset = make_dataset(cfg, labels, root, False, cache, eval_snr=snr)
            _check_inputs(dataset, modalities, limit, skip_bad)
            label_problems = dataset.label_problems
            if cache is not None:  # the features this SNR lacks, computed once (encoded in fp32)
                stats = cache.fill(labels, cache.conditions("test", [snr]), limit=limit, progress=progress)
                if stats.utterances:
                    print(f"features {labels.name} at {snr_label(snr)}: {stats.line()}")
            loader = _loader(dataset, cfg, decode, limit)
            records += _decode_snr(
                model,
                loader,
                _heard(combos, snr, cascade),
                decode,
                precision,
                snr_label(snr),
                skip_bad,
                skipped,
                progress,
                clock,
            )
    if not records:
        raise UserError(f"{labels}: none of the utterances could be read (first: {next(iter(skipped.items()), '')})")
    snr_labels = [snr_label(s) for s in snrs]
    rated = tuple(RateCombination(combination_key(c), c[0], c[1], tokens_per_second(model, c)) for c in combos)
    table = _wer_table(records, [c.key for c in rated], snr_labels)
    times = clock.summary(decode, precision)
    policies: dict[str, PolicyScores] = {}
    if cascade is not None:
        rows = [r.to_json() for r in records]
        policies["cascade"], seconds = policy_results(rows, rated, snr_labels, cascade, times.seconds_per_utterance)
        times = dataclasses.replace(times, policies={"cascade": seconds})
    results = EvaluationResult(
        name=cfg.name,
        task=cfg.model.compression.task,
        decode=_decode_settings(decode, precision),
        eval_noise_seed=cfg.data.eval_noise_seed,
        snrs=tuple(snr_labels),
        combinations=rated,
        groups=tuple(table),
        wer=table,
        skipped=dict(sorted(skipped.items())),
        label_problems=tuple(label_problems),
        labels=str(labels),
        root=str(root),
        policies=policies,
        info=dict(info or {}),
    )
    if out_dir is not None:
        write_outputs(results, records, Path(out_dir))
        atomic_write_text(Path(out_dir) / "decode_times.json", json.dumps(times.to_json(), indent=2))
    return results


def _loader(dataset: AVDataset, cfg: Config, decode: DecodeConfig, limit: int | None) -> DataLoader:
    """Batches of `decode.batch_size` utterances in label order, failed items marked (`collate_tracked`)."""
    return DataLoader(
        _Tracked(dataset, limit),
        batch_size=decode.batch_size,
        shuffle=False,
        num_workers=cfg.data.loader_workers,
        collate_fn=collate_tracked,
    )


@torch.no_grad()
def dataset_errors(
    model: AVSRModel,
    cfg: Config,
    dataset: AVDataset,
    combos: list[Combination],
    decode: DecodeConfig,
    precision: Resolved,
    limit: int | None = None,
) -> tuple[dict[str, ErrorCounts], dict[str, str]]:
    """Corpus error counts per combination key of `dataset` decoded as `evaluate` decodes (batches in label
    order, encoders once per batch), but in `precision` as given, with the model's layout left as it is and
    nothing written: the training recipe's validation WER (`train.plateau`). Unreadable utterances are left
    out and returned as {id: reason}."""
    model.eval()
    skipped: dict[str, str] = {}
    records = _decode_snr(
        model,
        _loader(dataset, cfg, decode, limit),
        combos,
        decode,
        precision,
        "clean",
        True,
        skipped,
        False,
        DecodeClock(),
    )
    keys = [combination_key(c) for c in combos]
    return {k: total(r.counts for r in records if r.combo == k) for k in keys}, skipped


def _heard(combos: list[Combination], snr: float | None, cascade: JsonObject | None) -> list[Combination]:
    """The combinations worth decoding at `snr`: in babble, those that read audio (a video-only row of a unified
    model decodes the same as clean) and the cascade's rungs."""
    rungs = set(cascade["ladder"]) if cascade else set()
    return [c for c in combos if snr is None or c[0] is not None or combination_key(c) in rungs]


def feature_cache(model: AVSRModel, cfg: Config, root: Path) -> FeatureCache | None:
    """With `data.feature_cache`: the cache of the model's encoders for the corpus at `root`."""
    if cfg.data.feature_cache is None:
        return None
    cfg = copy.deepcopy(cfg)
    cfg.data.root = str(root)  # the corpus being evaluated names the media, whatever the run trained on
    return FeatureCache.for_model(cfg, model)


# ------------------------------------------------------------------------------------------ summaries
def _wer_table(records: list[_Record], keys: list[str], snrs: list[str]) -> WerTable:
    """group -> combination key -> SNR -> the cell of the records there; groups `all` first, then by name."""
    sums: dict[tuple[str, str, str], list[ErrorCounts]] = defaultdict(list)
    for r in records:
        for g in r.groups:
            sums[(g, r.combo, r.snr)].append(r.counts)
    groups = sorted({g for g, _, _ in sums}, key=lambda g: (g != "all", g))
    return wer_table(sums, groups, keys, snrs)


def _decode_settings(decode: DecodeConfig, precision: Resolved) -> DecodeSettings:
    return DecodeSettings(
        num_beams=decode.num_beams,
        max_new_tokens=decode.max_new_tokens,
        length_penalty=decode.length_penalty,
        precision=precision.precision,  # what ran, not what was asked (`auto`)
        precision_reason=precision.reason,
        quantize=decode.quantize,
    )


def markdown(results: EvaluationResult, groups: Sequence[str] | None = None) -> str:
    """One table per group (`groups`: these only, default every group): rows = rate combinations, columns = SNR;
    WER in %."""
    snrs = results.snrs
    settings = f"Task {results.task}, beams {results.decode.num_beams}{_precision_note(results.decode)}"
    lines = [
        f"# WER (%) of {results.name} on {results.labels}",
        "",
        f"{settings}; tokens/s = LLM input (A/V) tokens per second of speech. "
        f"Skipped utterances: {len(results.skipped)}.",
        "",
    ]
    for group in results.groups if groups is None else groups:
        lines += [
            f"## {group}",
            "",
            "| rates | tokens/s | " + " | ".join(_column(s) for s in snrs) + " |",
            "|---|---:|" + "---:|" * len(snrs),
        ]
        for combo in results.combinations:
            cells = results.wer[group][combo.key]
            wers = [f"{100 * cells[s].wer:.2f}" if cells[s].utterances else "-" for s in snrs]
            lines.append(f"| {combo.key} | {combo.tokens_per_second:.3g} | " + " | ".join(wers) + " |")
        lines.append("")
    for name, policy in results.policies.items():
        lines += [
            f"## policy: {name} (group all; threshold {policy.threshold}, ladder {' > '.join(policy.ladder)})",
            "",
            "| SNR | tokens/s | WER | stops |",
            "|---|---:|---:|---|",
        ]
        for snr in snrs:
            p = policy.by_snr[snr]
            stops = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p.stops.items())
            lines.append(f"| {_column(snr)} | {p.tokens_per_second:.3g} | {100 * p.wer:.2f} | {stops} |")
        lines.append("")
    return "\n".join(lines)


def _precision_note(decode: DecodeSettings) -> str:
    """`, precision bf16` (`, precision fp32, int8 weights`); nothing for results written before the precision
    was recorded (fp32 then)."""
    precision, quantize = decode.precision, decode.quantize
    return (f", precision {precision}" if precision else "") + (f", {quantize} weights" if quantize != "none" else "")


def _column(snr: str) -> str:
    return snr if snr == "clean" else f"{snr} dB"


def plot(results: EvaluationResult, path: Path) -> None:
    """WER (%) of group `all` against LLM input tokens per second, one line per SNR, a star per policy and SNR."""
    combos = sorted(results.combinations, key=lambda c: c.tokens_per_second)
    table = results.wer["all"]
    series = []
    for i, snr in enumerate(results.snrs):
        colour = f"C{i}"  # the SNR's stars take its line's colour
        points = [(c.tokens_per_second, 100 * table[c.key][snr].wer) for c in combos]
        series.append(plots.Series(points, _column(snr), colour=colour))
        for name, policy in results.policies.items():
            star = (policy.by_snr[snr].tokens_per_second, 100 * policy.by_snr[snr].wer)
            series.append(plots.Series([star], f"{name} {_column(snr)}", "", colour, "*", marker_size=12))
    first = results.snrs[0]
    notes = [(c.key, (c.tokens_per_second, 100 * table[c.key][first].wer)) for c in combos]
    plots.plot([plots.Panel(series, results.name, notes)], path, size=(6, 4), legend={"title": "SNR"})


def write_outputs(results: EvaluationResult, records: list[_Record], out_dir: Path) -> None:
    """results.json, results.md, wer_vs_tokens.png and hypotheses.jsonl in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.json", json.dumps(results.to_json(), indent=2) + "\n")
    atomic_write_text(out_dir / "results.md", markdown(results))
    plot(results, out_dir / "wer_vs_tokens.png")
    with open(out_dir / "hypotheses.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
