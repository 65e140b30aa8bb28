"""LRS2 / LRS3 preparation: the original release -> the layout and label files of the synthetic corpus. The
crop and label stages take `SourceVideo` records from any scanner: `folder.py` feeds them a folder of videos.

    ROOT (LRS3)  {pretrain,trainval,test}/<speaker>/<id>.mp4 + .txt
    ROOT (LRS2)  {main,pretrain}/<video>/<id>.mp4 + .txt, and the lists {pretrain,train,val,test}.txt

    OUT/<dataset>/<subset>/<speaker>/<id>[_NN].mp4   96x96 RGB mouth crops, 25 fps, H.264 (`mouth_crop`)
    OUT/<dataset>/<subset>/<speaker>/<id>[_NN].wav   16 kHz mono PCM, exactly 640 samples per video frame
    OUT/labels/{train,val,test}.csv                  dataset,rel_path,input_length,transcript (labels.py)
    OUT/labels/<dataset>_<subset>.csv                the same rows per release subset (e.g. LRS3's 30 h trainval)
    OUT/meta/report.json                             counts, and every skipped clip or segment with its reason
    OUT/meta/lrs_done/<subset>/<speaker>/<id>.json   one done-marker per source clip (its rows or its skip)

Splits: LRS3 pretrain + trainval -> train (minus `val_fraction` of the trainval speakers, chosen by a hash of
the speaker id, -> val), test -> test; LRS2 pretrain + train -> train, val -> val, test -> test. Transcripts
are lower-cased and the release's `{LG}`/`{NS}`-style annotations dropped. `pretrain` clips longer than
`max_seconds` are cut at word boundaries into segments of at most `max_seconds` (`segment_words`), named
`<id>_00`, `<id>_01`...; other subsets are kept whole, as in auto_avsr, and a whole clip longer than
`MAX_CLIP_SECONDS` (what a model reads at once) is refused as "too long", never truncated.

Stages, each safe to rerun:
  1. scan     list the clips of the release (cheap; the same list for every shard); an entry whose files lie
              outside ROOT, or whose outputs would lie outside OUT (`..`, an absolute id, a symlink out), stops
              the run with its list file and line before anything is written;
  2. crop     this shard's clips without a done-marker: read (PyAV, resampled to 25 fps by timestamp),
              dlib landmarks (`face`), mouth crops (`mouth_crop`), cut into segments, write media, then the
              marker (media are renamed into place first, so an interrupted clip is simply redone);
  3. labels   label files and report from all markers present (`labels_only=True` runs just this stage,
              e.g. once after the last job of a cluster array; the report counts clips still `pending`).

Differences from the public pipelines (auto_avsr's and AV-HuBERT's preparation scripts): no clip is dropped
silently (auto_avsr drops them; here every skip is in the report, with "unreadable file", "no transcript",
"no audio", "too long", "no face", "too few frames", "crop out of bounds" or "no words"); segmentation cannot
crash on a first word past the limit and pads the cuts into the silence around words instead of starting every
first segment at 0 (auto_avsr's `split_file`); the frame rate is normalised by timestamp (auto_avsr has no fps
normalisation); audio is always resampled to 16 kHz mono and segments never exceed `max_seconds` (AV-HuBERT
relies on the source and has no maximum); the largest face is used (AV-HuBERT keeps the last); nothing depends
on container frame counts (AV-HuBERT's smoothing does).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mome.constants import FPS, MAX_CLIP_SECONDS, SAMPLES_PER_FRAME
from mome.data.labels import LabelRow, RootGuard, media_path, path_problem, write_labels
from mome.data.media import MediaError, check_file, cut_or_pad, header_seconds, read_media, write_audio, write_video
from mome.errors import UserError
from mome.io import atomic_write, atomic_write_text
from mome.lrs.face import FaceLandmarker
from mome.lrs.mouth_crop import MIN_FRAMES, CropError, MouthCrops, mouth_clip

log = logging.getLogger(__name__)
DATASETS = ("lrs3", "lrs2")
SPLITS = ("train", "val", "test")
MAX_SECONDS = 16.0
"""Longest pretrain segment (auto_avsr's `seg_duration`)."""
PAD_SECONDS = 0.2
"""Context kept around a segment's words, never past the middle of the gap to the next word."""
_ANNOTATION = re.compile(r"\{[^}]*\}")


# ------------------------------------------------------------------------------------------------ stage 1: scan
@dataclass(frozen=True)
class SourceVideo:
    """One source video, its transcript and where its outputs go: what every scanner produces (an LRS
    release here, a folder of videos in `folder.py`) and the crop stage consumes, so both share one pipeline."""

    dataset: str
    subset: str
    """Release folder: pretrain, trainval, test (LRS3); pretrain, main (LRS2); "" for a folder of videos."""
    clip_id: str
    """`<speaker or video>/<id>` in a release; a folder video's path under the folder, without its suffix."""
    split: str
    source: Path
    """The video file."""
    transcript: Path | str | None
    """The `.txt` to read (an LRS transcript with word timings, or plain text), the text itself (a manifest
    row), or None: no transcript, the clip is reported as such."""
    speaker: str = ""
    """Who speaks, where known: the split is chosen by it, and the report counts speakers per split."""

    @property
    def rel_stem(self) -> str:
        return "/".join(part for part in (self.dataset, self.subset, self.clip_id) if part)

    @property
    def key(self) -> str:
        return f"{self.subset}/{self.clip_id}" if self.subset else self.clip_id


def _is_val_speaker(speaker: str, val_fraction: float) -> bool:
    return zlib.crc32(speaker.encode()) % 10_000 < val_fraction * 10_000


def _list_lines(list_file: Path) -> list[str]:
    try:
        return list_file.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{list_file}: not UTF-8 text (byte {err.start})") from None


def _check_source(guard: RootGuard, subset: str, clip_id: str, where: str) -> None:
    """A clip must lie inside the release (symlinks followed): its id also names the files written to OUT."""
    reason = path_problem(clip_id) or guard.problem(f"{subset}/{clip_id}")
    if reason:
        raise UserError(f"{where}: {reason}; fix or remove this entry")


def scan_release(root: str | Path, dataset: str, val_fraction: float = 0.01) -> list[SourceVideo]:
    """Every clip of the release, sorted by (subset, id). Listed clips whose files are missing are kept
    (they are reported as unreadable); a clip whose files would resolve outside `root` (`..`, an absolute
    id, a symlink out) is a `UserError` naming its list file and line, before anything is written."""
    root = Path(root).absolute()  # workers may start in another directory
    if dataset not in DATASETS:
        raise UserError(f"--dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    if not root.is_dir():
        raise UserError(f"{root}: not a directory")
    guard = RootGuard(root, (".mp4", ".txt"))
    clips = []
    if dataset == "lrs3":
        for subset in ("pretrain", "trainval", "test"):
            for mp4 in sorted((root / subset).glob("*/*.mp4")):
                clip_id = f"{mp4.parent.name}/{mp4.stem}"
                _check_source(guard, subset, clip_id, str(mp4))
                split = {"pretrain": "train", "test": "test"}.get(subset) or (
                    "val" if _is_val_speaker(mp4.parent.name, val_fraction) else "train"
                )
                clips.append(
                    SourceVideo(dataset, subset, clip_id, split, mp4, mp4.with_suffix(".txt"), mp4.parent.name)
                )
    else:
        for listed, subset, split in (
            ("pretrain", "pretrain", "train"),
            ("train", "main", "train"),
            ("val", "main", "val"),
            ("test", "main", "test"),
        ):
            list_file = root / f"{listed}.txt"
            if not list_file.is_file():
                continue
            for line_no, line in enumerate(_list_lines(list_file), start=1):
                if line.strip():  # test.txt lines carry a flag after the id ("<video>/<id> NF")
                    clip_id = line.split()[0]
                    _check_source(guard, subset, clip_id, f"{list_file}:{line_no}")
                    mp4 = root / subset / f"{clip_id}.mp4"
                    clips.append(SourceVideo(dataset, subset, clip_id, split, mp4, mp4.with_suffix(".txt")))
    if not clips:
        expected = (
            "pretrain/, trainval/, test/ with <speaker>/<id>.mp4"
            if dataset == "lrs3"
            else "pretrain.txt, train.txt, val.txt, test.txt beside main/ and pretrain/"
        )
        raise UserError(f"{root}: no {dataset} clips found (expected {expected})")
    return clips


def shard(clips: list[SourceVideo], index: int, count: int) -> list[SourceVideo]:
    """Clips `index`, `index + count`, ... of the sorted list (disjoint, and together complete)."""
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {index}/{count}: expected I/N with 0 <= I < N")
    return clips[index::count]


# ------------------------------------------------------------------------------------------ transcripts, segments
@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class TranscriptSegment:
    start: float
    end: float
    text: str


def _clean(text: str) -> str:
    return " ".join(_ANNOTATION.sub(" ", text).lower().split())


def read_transcript(path: str | Path) -> tuple[str, list[Word]]:
    """(lower-cased text, word timings) of a transcript file: LRS's `Text:` line and its table under
    `WORD START END ASDSCORE`, or, for a file without a `Text:` line, the whole file as plain text (no
    timings). A file that is not UTF-8 is refused rather than read with replacement characters."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except OSError as err:
        raise MediaError(path, f"unreadable transcript ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise MediaError(path, f"transcript is not UTF-8 text (byte {err.start})") from None
    text, words, in_table, labelled = "", [], False, False
    for line in lines:
        fields = line.split()
        if line.startswith("Text:"):
            text, labelled = _clean(line[len("Text:") :]), True
        elif fields[:3] == ["WORD", "START", "END"]:
            in_table = True
        elif in_table and len(fields) >= 3:
            try:
                word = Word(_clean(fields[0]), float(fields[1]), float(fields[2]))
            except ValueError:
                raise MediaError(path, f"bad word timing line {line!r}") from None
            if word.text:
                words.append(word)
    if not labelled and not in_table:
        text = _clean(" ".join(lines))
    return text, words


def segment_words(
    words: list[Word], clip_seconds: float, max_seconds: float = MAX_SECONDS, pad: float = PAD_SECONDS
) -> list[TranscriptSegment]:
    """Cut a long clip at word boundaries into segments of at most `max_seconds`.

    A clip no longer than `max_seconds` is one segment, [0, clip_seconds]. Otherwise words are added
    greedily while the segment fits; each segment extends `pad` seconds into the silence around its words,
    but never past the middle of the gap to a neighbouring word nor past the clip. A single word longer than
    `max_seconds` (not seen in LRS) is cut at `max_seconds` rather than crashing (auto_avsr 5.2.6).
    """
    if clip_seconds <= max_seconds:
        return [TranscriptSegment(0.0, clip_seconds, " ".join(w.text for w in words))]
    n = len(words)
    before = [max(0.0, w.start - pad, (words[i - 1].end + w.start) / 2 if i else 0.0) for i, w in enumerate(words)]
    after = [
        min(clip_seconds, w.end + pad, (w.end + words[i + 1].start) / 2 if i + 1 < n else clip_seconds)
        for i, w in enumerate(words)
    ]
    segments, i = [], 0
    while i < n:
        start, j = before[i], i
        while j + 1 < n and after[j + 1] - start <= max_seconds:
            j += 1
        end = min(after[j], start + max_seconds)
        segments.append(TranscriptSegment(start, end, " ".join(w.text for w in words[i : j + 1])))
        i = j + 1
    return segments


# -------------------------------------------------------------------------------------------- stage 2: crop
@dataclass(frozen=True)
class Options:
    max_seconds: float = MAX_SECONDS
    pad: float = PAD_SECONDS
    crf: int = 20
    detect_size: int = 640
    cnn_fallback: bool = False


def _skip(rel: str, reason: str, detail: str) -> dict:
    return {"rel_path": rel, "reason": reason, "detail": detail}


NO_AUDIO = ("no audio track", "empty audio track")
"""`MediaError` reasons reported as "no audio" rather than "unreadable file"."""


class _Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _text(clip: SourceVideo) -> tuple[str, list[Word]]:
    """The clip's transcript (text, word timings); `_Skip` "no transcript" where it has none."""
    if isinstance(clip.transcript, str):
        return _clean(clip.transcript), []
    if clip.transcript is None:
        raise _Skip("no transcript", "not in the manifest")
    if not clip.transcript.is_file():
        raise _Skip("no transcript", f"{clip.transcript.name!r} not found beside the video")
    return read_transcript(clip.transcript)


def _too_long(seconds: float) -> _Skip:
    return _Skip(
        "too long",
        f"{seconds:.1f} s, longer than the {MAX_CLIP_SECONDS} s a model reads at once; cut it into shorter clips",
    )


def _read(
    clip: SourceVideo, landmarker: FaceLandmarker, record: dict
) -> tuple[str, list[Word], np.ndarray, np.ndarray, MouthCrops]:
    """Transcript, frames, audio and mouth crops of a clip, cheapest checks first; `_Skip` with the reason."""
    segmented = clip.subset == "pretrain"
    try:
        check_file(clip.source)
        text, words = _text(clip)
        if not segmented and not (text or words):
            raise _Skip("no words", "empty transcript")
        seconds = header_seconds(clip.source)
        if not segmented and seconds is not None and seconds > MAX_CLIP_SECONDS:
            raise _too_long(seconds)
        frames, audio = read_media(clip.source)
        record["frames"] = len(frames)
        if not segmented and len(frames) / FPS > MAX_CLIP_SECONDS:
            raise _too_long(len(frames) / FPS)
        crops = mouth_clip(frames, landmarker)
    except MediaError as err:
        raise _Skip("no audio" if err.reason in NO_AUDIO else "unreadable file", str(err)) from None
    except CropError as err:
        raise _Skip(err.reason, str(err)) from None
    return text, words, frames, audio, crops


def process_clip(clip: SourceVideo, out: Path, options: Options, landmarker: FaceLandmarker) -> dict:
    """Crop, cut and write one source clip; returns its done-marker record (rows and skips).

    `pretrain` clips of a release longer than `options.max_seconds` are cut at word boundaries; every other
    clip is kept whole, and refused as "too long" beyond `MAX_CLIP_SECONDS`, never truncated."""
    record = {
        "clip": clip.key,
        "split": clip.split,
        "subset": clip.subset,
        "rows": [],
        "skipped": [],
        "frames": 0,
        "detected": 0,
    }
    try:
        text, words, frames, audio, crops = _read(clip, landmarker, record)
    except _Skip as skip:
        record["skipped"].append(_skip(clip.rel_stem, skip.reason, skip.detail))
        return record
    record["detected"] = crops.detected
    audio = cut_or_pad(audio, len(frames) * SAMPLES_PER_FRAME)
    seconds = len(frames) / FPS
    if clip.subset == "pretrain":
        parts = [
            (f"{clip.rel_stem}_{i:02d}", s)
            for i, s in enumerate(segment_words(words, seconds, options.max_seconds, options.pad))
        ]
    else:
        parts = [(clip.rel_stem, TranscriptSegment(0.0, seconds, text or " ".join(w.text for w in words)))]
    for rel, seg in parts:
        f0, f1 = round(seg.start * FPS), min(len(frames), round(seg.end * FPS))
        if not seg.text:
            record["skipped"].append(_skip(rel, "no words", "empty transcript"))
            continue
        if f1 - f0 < MIN_FRAMES:
            record["skipped"].append(_skip(rel, "too few frames", f"{f1 - f0} frames, at least {MIN_FRAMES} needed"))
            continue
        atomic_write(media_path(out, rel, ".mp4"), lambda tmp: write_video(tmp, crops.crops[f0:f1], crf=options.crf))
        atomic_write(
            media_path(out, rel, ".wav"),
            lambda tmp: write_audio(tmp, audio[f0 * SAMPLES_PER_FRAME : f1 * SAMPLES_PER_FRAME]),
        )
        record["rows"].append(
            {
                "rel_path": rel,
                "frames": f1 - f0,
                "text": seg.text,
                "start": round(seg.start, 3),
                "end": round(seg.end, 3),
            }
        )
    return record


def _marker(out: Path, clip: SourceVideo) -> Path:
    return out / "meta" / "lrs_done" / f"{clip.key}.json"


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


_WORKER: dict = {}


def _init_worker(options: Options) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only compete
    _WORKER["landmarker"] = FaceLandmarker(detect_size=options.detect_size, cnn_fallback=options.cnn_fallback)
    _WORKER["options"] = options


def _work(args: tuple[SourceVideo, Path]) -> dict:
    clip, out = args
    start = time.perf_counter()
    try:
        record = process_clip(clip, out, _WORKER["options"], _WORKER["landmarker"])
    except Exception as err:  # one clip's failure is reported in its marker, never fatal to the job
        log.exception("failed on %s", clip.source)
        record = {
            "clip": clip.key,
            "split": clip.split,
            "subset": clip.subset,
            "rows": [],
            "frames": 0,
            "detected": 0,
            "skipped": [_skip(clip.rel_stem, "error", f"{type(err).__name__}: {err}")],
        }
    record["seconds"] = round(time.perf_counter() - start, 3)
    _write_json(_marker(out, clip), record)
    return record


# ------------------------------------------------------------------------------------------ stage 3: labels
def write_labels_and_report(out: Path, clips: list[SourceVideo], this_run: dict, extra: dict | None = None) -> dict:
    """Label files and `meta/report.json` from the markers of every clip of the source that has one; `extra`
    adds the scanner's own entries to the report."""
    rows: dict[str, list[LabelRow]] = {s: [] for s in SPLITS}
    by_subset: dict[str, list[LabelRow]] = {}
    skipped, pending, done = [], 0, 0
    for clip in clips:
        marker = _marker(out, clip)
        if not marker.is_file():
            pending += 1
            continue
        done += 1
        record = json.loads(marker.read_text())
        for r in record["rows"]:
            row = LabelRow(clip.dataset, r["rel_path"], r["frames"], r["text"])
            rows[clip.split].append(row)
            if clip.subset:
                by_subset.setdefault(f"{clip.dataset}_{clip.subset}", []).append(row)
        skipped += [{"clip": clip.key, **s} for s in record["skipped"]]
    for name, split_rows in [*rows.items(), *by_subset.items()]:
        atomic_write(out / "labels" / f"{name}.csv", lambda tmp: write_labels(tmp, split_rows))
    frames = sum(r.input_length for split_rows in rows.values() for r in split_rows)
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    report = {
        "dataset": clips[0].dataset,
        "clips": len(clips),
        "done": done,
        "pending": pending,
        "written": sum(len(r) for r in rows.values()),
        "per_split": {s: len(r) for s, r in rows.items()},
        "hours": round(frames / FPS / 3600, 4),
        "skipped_reasons": reasons,
        "skipped": skipped,
        "this_run": this_run,
        **(extra or {}),
    }
    _write_json(out / "meta" / "report.json", report)
    return report


# -------------------------------------------------------------------------------------------------- driver
def _todo(out: Path, clips: list[SourceVideo], redo_skipped: bool) -> list[SourceVideo]:
    """The clips without a done-marker (or with a skip, if `redo_skipped`), each checked to write inside OUT."""
    media, markers = RootGuard(out), RootGuard(out, (".json",))
    todo = []
    for clip in clips:
        _check_output(media, markers, clip)
        marker = _marker(out, clip)
        if marker.is_file() and (not redo_skipped or json.loads(marker.read_text())["rows"]):
            continue
        todo.append(clip)
    return todo


def _check_output(media: RootGuard, markers: RootGuard, clip: SourceVideo) -> None:
    """A clip's media and marker are written inside OUT, even where a folder there is a symlink."""
    reason = media.problem(clip.rel_stem) or markers.problem(f"meta/lrs_done/{clip.key}")
    if reason:
        raise UserError(f"{clip.source}: refusing to write outside {media.root}: {reason}")


def prepare_lrs(
    root: str | Path,
    out: str | Path,
    dataset: str,
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    workers: int | None = None,
    options: Options | None = None,
    val_fraction: float = 0.01,
    labels_only: bool = False,
    redo_skipped: bool = False,
    progress: bool = True,
) -> dict:
    """Prepare this shard of an LRS2/LRS3 release into `out`; returns the report (also `meta/report.json`).

    Args:
        shard_index, shard_count: process clips `shard_index::shard_count` of the sorted release (a job array).
        workers: processes (default: all cores).
        val_fraction: share of LRS3 trainval speakers held out as the val split (0: none, as in the papers).
        labels_only: skip stage 2; rebuild labels and report from the markers present.
        redo_skipped: process again the clips whose marker records a skip (e.g. after installing a better
            detector); finished clips are never redone.
    """
    options = options or Options()
    clips = scan_release(root, dataset, val_fraction)
    info = {"dataset": dataset, "root": str(Path(root).resolve()), "val_fraction": val_fraction}
    return prepare_clips(
        clips,
        out,
        info,
        shard_index=shard_index,
        shard_count=shard_count,
        workers=workers,
        options=options,
        labels_only=labels_only,
        redo_skipped=redo_skipped,
        progress=progress,
    )


def prepare_clips(
    clips: list[SourceVideo],
    out: str | Path,
    info: dict,
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    workers: int | None = None,
    options: Options | None = None,
    labels_only: bool = False,
    redo_skipped: bool = False,
    progress: bool = True,
    extra: dict | None = None,
) -> dict:
    """Stages 2 and 3 for the clips of any scanner (sorted, the same list for every shard): crop this shard's
    clips that have no marker yet, then write labels and report. `info` (its `dataset` and `source` at
    least) goes to `meta/lrs.json`; an OUT that holds another source is refused. See `prepare_lrs`."""
    out = Path(out).absolute()  # pool workers may start in another directory
    options = options or Options()
    info = {"source": "release", **info, "options": options.__dict__}
    info_path = out / "meta" / "lrs.json"
    if info_path.is_file():
        held = json.loads(info_path.read_text())
        if (held.get("source", "release"), held.get("dataset")) != (info["source"], info["dataset"]):
            raise UserError(
                f"{out} already holds {held.get('dataset')} ({held.get('source', 'release')}); use another OUT"
            )
    todo = _todo(out, shard(clips, shard_index, shard_count), redo_skipped)  # checked before anything is written
    _write_json(info_path, info)
    this_run = {"shard": f"{shard_index}/{shard_count}", "processed": 0, "frames": 0, "seconds": 0.0}
    if todo and not labels_only:
        workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        start = time.perf_counter()
        jobs = [(c, out) for c in todo]
        # Not "fork": a parent that has used OpenCV (or any threaded library) can hand a held lock to the
        # children, which then hang. The fork server is a fresh process that forks the workers.
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["mome.lrs.prepare"])
        pool = context.Pool(workers, _init_worker, (options,)) if workers > 1 else None
        if pool is None:
            _init_worker(options)
        try:
            results = pool.imap_unordered(_work, jobs) if pool else map(_work, jobs)
            bar = tqdm(results, total=len(jobs), desc=f"prepare {info['dataset']}", unit="clip", disable=not progress)
            for record in bar:
                this_run["processed"] += 1
                this_run["frames"] += record["frames"]
                bar.set_postfix(fps=f"{this_run['frames'] / (time.perf_counter() - start):.0f}", refresh=False)
                for s in record["skipped"]:
                    log.warning("skipped %s: %s", s["rel_path"], s["detail"])
        finally:
            if pool:
                pool.close()
                pool.join()
        this_run["seconds"] = round(time.perf_counter() - start, 2)
        this_run["frames_per_second"] = round(this_run["frames"] / max(this_run["seconds"], 1e-9), 1)
        this_run["workers"] = workers
    return write_labels_and_report(out, clips, this_run, extra)
