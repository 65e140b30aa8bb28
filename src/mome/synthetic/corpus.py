"""Generate the synthetic audio-visual speech corpus in the auto_avsr / LRS3 preprocessed layout.

    <out>/synth/<split>/<speaker>/<index>.mp4   96x96 RGB mouth crops, 25 fps, H.264
    <out>/synth/<split>/<speaker>/<index>.wav   16 kHz mono PCM, exactly 640 samples per video frame
    <out>/labels/{train,val,test}.csv           dataset,rel_path,input_length,transcript (labels.py)
    <out>/meta/{train,val,test}.jsonl           speaker, engine, voice, grammar, phoneme/viseme timings
    <out>/meta/speakers.json, report.json       speakers per split; counts and skipped items
    <out>/noise/babble.wav                      babble of talkers who are in no split

Plan first, then work: the list of utterances (text, speaker, seed) is fixed in the parent process from
`seed` alone, workers synthesise and write each one, and the parent writes labels in plan order. So the
output does not depend on the number of workers or their timing. An item that fails (TTS error, too short,
timings that do not fit the audio) is skipped and listed in `meta/report.json`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mome.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SYNTH_SPEAKERS
from mome.data.labels import LabelRow, write_labels, write_metadata
from mome.data.media import write_audio, write_video
from mome.synthetic import grammar
from mome.synthetic.render import render_clip
from mome.synthetic.speakers import SPLITS, Speaker, make_speakers
from mome.synthetic.tts import TTSError, synthesize
from mome.synthetic.visemes import articulation, frame_labels, viseme_segments

log = logging.getLogger(__name__)
DATASET = "synth"
CORPUS_VERSION = 2
"""What `synthesize_corpus` writes for given options; raised when that changes (2: the GRID letter "a" spoken
as its name by both engines, where version 1 had espeak-ng voices say the letter i)."""
MIN_FRAMES = 8


@dataclass
class UtteranceJob:
    """One utterance to synthesise: its split, path, sentence, voice and seed."""

    split: str
    rel_path: str
    sentence: grammar.Sentence
    speaker: Speaker
    seed: int


def _seed(*parts) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


def plan(
    num_utterances: int, seed: int, split_fractions: dict[str, float], grid_fraction: float, speakers: list[Speaker]
) -> list[UtteranceJob]:
    """The fixed list of utterances; sizes are rounded per split and the remainder goes to train."""
    sizes = {s: int(num_utterances * f) for s, f in split_fractions.items()}
    sizes["train"] = sizes.get("train", 0) + num_utterances - sum(sizes.values())
    jobs = []
    for split, n in sizes.items():
        pool = [s for s in speakers if s.split == split]
        if n and not pool:
            raise ValueError(f"no speakers for split {split!r}")
        sentences = grammar.sample_sentences(random.Random(f"text:{seed}:{split}"), n, split, grid_fraction)
        for i, sentence in enumerate(sentences):
            spk = pool[i % len(pool)]
            rel = f"{DATASET}/{split}/{spk.id}/{i:05d}"
            jobs.append(UtteranceJob(split, rel, sentence, spk, _seed(seed, rel)))
    return jobs


def make_utterance(job: UtteranceJob, root: Path) -> dict:
    """Synthesise, render and write one utterance; returns its metadata record (raises on failure)."""
    voice = job.speaker.voice
    speech = synthesize(job.sentence.spoken(), voice)
    gain = 0.5 + 0.4 * (job.speaker.appearance.scale - 0.85) / 0.3  # per-speaker level, 0.5-0.9 peak
    audio = speech.audio / max(1e-6, float(np.abs(speech.audio).max())) * gain
    num_frames = int(round(len(audio) / SAMPLES_PER_FRAME))
    if num_frames < MIN_FRAMES:
        raise TTSError(f"only {num_frames} frames")
    duration = num_frames / FPS
    if speech.phonemes[-1][2] > duration + 0.1:
        raise TTSError(f"phoneme timings end at {speech.phonemes[-1][2]:.2f} s, audio at {duration:.2f} s")
    audio = np.pad(audio, (0, max(0, num_frames * SAMPLES_PER_FRAME - len(audio))))[: num_frames * SAMPLES_PER_FRAME]
    segments = viseme_segments(speech.phonemes, voice.engine)
    frames = render_clip(articulation(segments, num_frames), job.speaker.appearance, job.seed)
    write_audio(root / f"{job.rel_path}.wav", audio)
    write_video(root / f"{job.rel_path}.mp4", frames)
    return {
        "rel_path": job.rel_path,
        "split": job.split,
        "speaker": job.speaker.id,
        "engine": voice.engine,
        "voice": voice.name,
        "rate": voice.rate,
        "pitch": voice.pitch,
        "grammar": job.sentence.grammar,
        "text": job.sentence.text,
        "spoken": job.sentence.spoken(),
        "num_frames": num_frames,
        "phonemes": [[p, round(s, 4), round(e, 4)] for p, s, e in speech.phonemes],
        "visemes": [[v, round(s, 4), round(e, 4)] for v, s, e in segments],
        "frame_visemes": frame_labels(segments, num_frames).tolist(),
    }


def _work(args: tuple[UtteranceJob, Path]) -> tuple[UtteranceJob, dict | None, str | None]:
    job, root = args
    try:
        return job, make_utterance(job, root), None
    except Exception as err:  # noqa: BLE001 - any failure of one item is reported, not fatal
        return job, None, f"{type(err).__name__}: {err}"


def _babble_audio(args: tuple[Speaker, str]) -> np.ndarray | None:
    speaker, text = args
    try:
        audio = synthesize(text, speaker.voice).audio
    except TTSError:
        return None
    return audio / max(1e-6, float(np.sqrt(np.mean(audio**2))))


def make_babble(speakers: list[Speaker], seed: int, seconds: float, talkers: int, pool) -> np.ndarray:
    """Sum of `talkers` streams, each a random sequence of utterances of the noise speakers: float32 [S]."""
    rng = random.Random(f"babble:{seed}")
    per_stream = int(seconds / 1.6) + 2
    texts = [(rng.choice(speakers), grammar.open_sentence(rng)) for _ in range(talkers * per_stream)]
    clips = [c for c in (pool.map(_babble_audio, texts) if pool else map(_babble_audio, texts)) if c is not None]
    length = int(seconds * SAMPLE_RATE)
    mix = np.zeros(length, np.float64)
    for k in range(talkers):
        stream = np.concatenate(clips[k::talkers])
        stream = np.tile(stream, int(np.ceil(length / len(stream)) + 1))
        start = rng.randrange(len(stream) - length)
        mix += stream[start : start + length]
    return (mix / np.abs(mix).max() * 0.8).astype(np.float32)


def synthesize_corpus(
    out_dir: str | Path,
    num_utterances: int,
    seed: int = 0,
    *,
    grid_fraction: float = 0.5,
    engines: tuple[str, ...] = ("flite", "espeak"),
    split_fractions: dict[str, float] | None = None,
    speakers_per_split: dict[str, int] | None = None,
    babble_seconds: float = 60.0,
    babble_talkers: int = 6,
    fixed_voices: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write a corpus of `num_utterances` utterances to `out_dir`; returns the report (also in meta/report.json).

    Args:
        grid_fraction: share of GRID sentences; the rest come from the open grammar.
        engines: TTS engines to use, `("flite",)`, `("espeak",)` or both.
        split_fractions: share of utterances per split (default train 0.8, val 0.1, test 0.1).
        speakers_per_split: number of distinct speakers per split and for the babble (`noise`).
        fixed_voices: every voice at its default rate and pitch (see `make_speakers`).
        workers: processes (default: all cores); the output is the same for any value.
    """
    root = Path(out_dir)
    split_fractions = split_fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    counts = {**SYNTH_SPEAKERS, **(speakers_per_split or {})}
    speakers = make_speakers(seed, counts, engines, fixed_voices=fixed_voices)
    jobs = plan(num_utterances, seed, split_fractions, grid_fraction, speakers)
    workers = workers or os.cpu_count() or 1
    records, skipped = [], []
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        results = (
            pool.imap(_work, [(j, root) for j in jobs], chunksize=4) if pool else map(_work, [(j, root) for j in jobs])
        )
        for job, record, error in tqdm(results, total=len(jobs), desc="synth", unit="utt", disable=not progress):
            if error:
                log.warning("skipped %s: %s", job.rel_path, error)
                skipped.append({"rel_path": job.rel_path, "reason": error})
            else:
                records.append(record)
        noise_speakers = [s for s in speakers if s.split == "noise"]
        if babble_seconds > 0 and noise_speakers:
            babble = make_babble(noise_speakers, seed, babble_seconds, babble_talkers, pool)
            write_audio(root / "noise" / "babble.wav", babble)
    finally:
        if pool:
            pool.close()
            pool.join()
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        write_labels(
            root / "labels" / f"{split}.csv",
            [LabelRow(DATASET, r["rel_path"], r["num_frames"], r["text"]) for r in rows],
        )
        write_metadata(root / "meta" / f"{split}.jsonl", rows)
    report = {
        "version": CORPUS_VERSION,
        "seed": seed,
        "requested": num_utterances,
        "grid_fraction": grid_fraction,
        "speakers": counts,
        "written": len(records),
        "skipped": skipped,
        "per_split": {s: sum(r["split"] == s for r in records) for s in SPLITS},
        "per_engine": {e: sum(r["engine"] == e for r in records) for e in engines},
        "per_grammar": {g: sum(r["grammar"] == g for r in records) for g in grammar.GRAMMARS},
        "hours": round(sum(r["num_frames"] for r in records) / FPS / 3600, 4),
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "speakers.json").write_text(json.dumps([s.to_dict() for s in speakers], indent=1) + "\n")
    (root / "meta" / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
