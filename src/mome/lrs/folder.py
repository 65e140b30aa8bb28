"""A folder of talking-face videos -> the corpus layout of `mome prepare-lrs` (`mome prepare SRC OUT`).

    SRC/**/<name>.{mp4,avi,mkv,webm,mov}   at any depth; names starting with "." are ignored
    SRC/**/<name>.txt                      its transcript beside it: plain text, or an LRS transcript, or
    --manifest FILE                        one CSV (tab-separated if it ends in .tsv) with the header
                                           path,text[,speaker]; paths relative to SRC (or absolute inside it)

    OUT/<name>/<path under SRC, without the suffix>.{mp4,wav}   mouth crops and 16 kHz audio, as prepare-lrs
    OUT/labels/{train,val,test}.csv, OUT/meta/report.json, OUT/meta/lrs_done/<path>.json   as prepare-lrs
    OUT/meta/speakers.json                                      the speakers of each split, where known

Only the scan is here: every `SourceVideo` goes through `prepare.prepare_clips`, the crop and label stages of
prepare-lrs (landmarks, mouth crop, 16 kHz audio, done-markers, `--shard`, the report). A clip is kept whole;
one longer than `MAX_CLIP_SECONDS` is reported as "too long" (cut such recordings yourself: without word
timings there is nowhere safe to cut). With a manifest, it is the only source of transcripts: a video it does
not list is reported as "no transcript".

Splits: speaker-disjoint where speakers are known (`folder`: the first folder under SRC; `column`: the
manifest's `speaker`), else clip by clip. The groups (speakers, or clips) are ordered by a hash of the seed and
their name, and fill test, then val, until each holds its share of the transcribed clips; the rest, and at
least one group, is train. Media paths do not depend on the split, so new fractions or a new seed only need
`--labels-only`; a clip added later can move a boundary group from one split to another.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mome.data.labels import MEDIA_SUFFIXES, RootGuard, path_problem
from mome.errors import UserError
from mome.io import atomic_write_text
from mome.lrs.prepare import SPLITS, Options, SourceVideo, prepare_clips

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
SPEAKER_FROM = ("folder", "column", "none")
RESERVED = ("labels", "meta", "noise")
"""Folders of a corpus root that a dataset name must not take."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class FolderScan:
    clips: list[SourceVideo]
    """Sorted by id: the same list, and so the same shards, on every machine."""
    speaker_from: str
    """Where speakers came from: folder, column or none."""
    speakers: dict[str, list[str]]
    """The speakers of each split; empty where speakers are unknown."""


@dataclass(frozen=True)
class Entry:
    """One manifest row."""

    text: str
    speaker: str
    line: int


def _relative(raw: str, src: Path, where: str) -> Path:
    """A manifest path as a path under `src`; `UserError` naming `where` if it leaves SRC."""
    path = Path(raw)
    if path.is_absolute():
        for base in (src, Path(os.path.realpath(src))):
            if path.is_relative_to(base):
                return path.relative_to(base)
        raise UserError(f"{where}: {raw} is outside SRC ({src})")
    reason = path_problem(path.as_posix())
    if reason:
        raise UserError(f"{where}: {reason}: paths are relative to SRC ({src}) and stay inside it")
    return path


def read_manifest(manifest: str | Path, src: Path) -> tuple[dict[Path, Entry], bool]:
    """(video path under `src` -> its row, whether there is a speaker column) of a CSV/TSV manifest with the
    header path,text[,speaker]; every problem is a `UserError` naming the file and line."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise UserError(f"{manifest}: manifest not found")
    try:
        content = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{manifest}: not UTF-8 text (byte {err.start})") from None
    tab = manifest.suffix.lower() == ".tsv"
    reader = csv.reader(io.StringIO(content, newline=""), delimiter="\t" if tab else ",", strict=True)
    entries: dict[Path, Entry] = {}
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        expected = f"expected the header path,text[,speaker]{' separated by tabs' if tab else ''}"
        missing = [c for c in ("path", "text") if c not in header]
        if missing or len(set(header)) < len(header):
            found = f"found {','.join(header)}" if any(header) else "the file is empty"
            raise UserError(
                f"{manifest}: {'no column ' + ' or '.join(missing) if missing else 'a repeated column'}"
                f"; {expected} ({found})"
            )
        path_at, text_at = header.index("path"), header.index("text")
        speaker_at = header.index("speaker") if "speaker" in header else None
        for row in reader:
            where = f"{manifest}:{reader.line_num}"
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise UserError(f"{where}: {len(row)} fields, the header has {len(header)}")
            if not row[path_at].strip():
                raise UserError(f"{where}: empty path")
            rel = _relative(row[path_at], src, where)
            if rel.suffix.lower() not in VIDEO_SUFFIXES:
                raise UserError(f"{where}: {row[path_at]} is not a video ({', '.join(VIDEO_SUFFIXES)})")
            if rel in entries:
                raise UserError(f"{where}: {row[path_at]} is listed twice (also on line {entries[rel].line})")
            speaker = row[speaker_at].strip() if speaker_at is not None else ""
            entries[rel] = Entry(row[text_at], speaker, reader.line_num)
    except csv.Error as err:
        raise UserError(f"{manifest}:{reader.line_num}: malformed {'TSV' if tab else 'CSV'} ({err})") from None
    if not entries:
        raise UserError(f"{manifest}: no rows under the header")
    return entries, speaker_at is not None


def _videos(src: Path, out: Path) -> list[Path]:
    """Every video under `src`, relative to it, sorted; hidden names, and OUT where it lies inside SRC, left
    out. Symlinked folders are not followed."""
    skip = os.path.realpath(out)
    found = []
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.realpath(Path(folder, d)) != skip]
        found += [
            Path(folder, f).relative_to(src)
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES
        ]
    return sorted(found)


def _check_name(rel: Path, src: Path, guard: RootGuard) -> str:
    """A video's clip id (its path under SRC without the suffix), refused where it cannot name an utterance."""
    text = rel.as_posix()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{src / rel}: the file name is not UTF-8; rename it") from None
    if "\n" in text or "\r" in text:
        raise UserError(f"{src / rel!r}: the file name holds a line break; rename it")
    clip_id = rel.with_suffix("").as_posix()
    if clip_id.endswith(MEDIA_SUFFIXES):
        raise UserError(
            f"{src / rel}: a name ending in {rel.with_suffix('').suffix} before the suffix reads as "
            "a media file in label rows; rename it"
        )
    reason = guard.problem(text) or guard.problem(rel.with_suffix(".txt").as_posix())
    if reason:
        raise UserError(f"{src / rel}: {reason}; only files inside SRC are read")
    return clip_id


def _speaker(rel: Path, entry: Entry | None, speaker_from: str, src: Path, manifest: Path | None) -> str:
    if speaker_from == "folder":
        if len(rel.parts) < 2:
            raise UserError(f"{src / rel}: not in a speaker folder (--speaker-from folder: SRC/<speaker>/...)")
        return rel.parts[0]
    if speaker_from == "column" and entry is not None:
        if not entry.speaker:
            raise UserError(f"{manifest}:{entry.line}: empty speaker (--speaker-from column)")
        return entry.speaker
    return ""


def assign_splits(groups: dict[str, int], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """group -> split for groups (speakers, or clips) of the given sizes: in the order of a hash of the seed
    and the name, groups fill test, then val, until each holds its share of all clips; the rest is train,
    which keeps at least one group."""
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).hexdigest())
    total, assigned, i = sum(groups.values()), {}, 0
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        held = 0
        while i < len(order) - 1 and held < fraction * total:
            assigned[order[i]], held, i = split, held + groups[order[i]], i + 1
    assigned.update((g, "train") for g in order[i:])
    return assigned


def scan_folder(
    src: str | Path,
    out: str | Path,
    *,
    name: str = "own",
    manifest: str | Path | None = None,
    speaker_from: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> FolderScan:
    """The clips of a folder of videos, sorted by id, each with its transcript and split. Every problem with
    the input is a one-line `UserError`, raised before anything is written.

    Args:
        speaker_from: "folder" (the first folder under SRC), "column" (the manifest's speaker column) or
            "none"; default: "column" where the manifest has one, else "none".
    """
    if not _NAME.fullmatch(name) or name in RESERVED:
        raise UserError(f"--name {name!r}: letters, digits, '_', '.', '-', and not {', '.join(RESERVED)}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(f"val {val_fraction:g} and test {test_fraction:g}: each in [0, 1), together below 1")
    src, out = Path(src).absolute(), Path(out).absolute()
    if not src.is_dir():
        raise UserError(f"{src}: {'not a folder' if src.exists() else 'no such folder'}")
    if os.path.realpath(src) == os.path.realpath(out):
        raise UserError(f"{out}: OUT must not be SRC (choose a new folder, inside SRC or elsewhere)")
    manifest = Path(manifest).absolute() if manifest is not None else None
    entries, has_column = read_manifest(manifest, src) if manifest is not None else ({}, False)
    if speaker_from is None:
        speaker_from = "column" if has_column else "none"
    if speaker_from not in SPEAKER_FROM:
        raise UserError(f"--speaker-from {speaker_from!r}: choose from {', '.join(SPEAKER_FROM)}")
    if speaker_from == "column" and not has_column:
        raise UserError(f"--speaker-from column: {manifest or 'no --manifest'}: no speaker column")
    videos = sorted(set(_videos(src, out)) | set(entries))
    if not videos:
        raise UserError(f"{src}: no videos found ({', '.join(VIDEO_SUFFIXES)}, in any subfolder)")
    guard, ids, clips = RootGuard(src, ("",)), {}, []
    for rel in videos:
        clip_id = _check_name(rel, src, guard)
        if clip_id in ids:
            raise UserError(f"{src / ids[clip_id]} and {src / rel} would both become {name}/{clip_id}; rename one")
        ids[clip_id] = rel
        entry = entries.get(rel)
        transcript = (entry.text if entry else None) if manifest is not None else src / rel.with_suffix(".txt")
        speaker = _speaker(rel, entry, speaker_from, src, manifest)
        clips.append(SourceVideo(name, "", clip_id, "train", src / rel, transcript, speaker))
    clips.sort(key=lambda c: c.clip_id)
    sizes: dict[str, int] = {}
    for clip in clips:
        if isinstance(clip.transcript, str) or (clip.transcript is not None and clip.transcript.is_file()):
            sizes[clip.speaker or clip.clip_id] = sizes.get(clip.speaker or clip.clip_id, 0) + 1
    split_of = assign_splits(sizes, val_fraction, test_fraction, seed)
    clips = [replace(c, split=split_of.get(c.speaker or c.clip_id, "train")) for c in clips]
    known = speaker_from != "none"
    speakers = {s: sorted(g for g in split_of if split_of[g] == s) for s in SPLITS} if known else {}
    return FolderScan(clips, speaker_from, speakers)


def prepare_folder(
    src: str | Path,
    out: str | Path,
    *,
    name: str = "own",
    manifest: str | Path | None = None,
    speaker_from: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    workers: int | None = None,
    options: Options | None = None,
    labels_only: bool = False,
    redo_skipped: bool = False,
    progress: bool = True,
) -> dict:
    """Prepare this shard of a folder of videos into `out` (see the module docstring); returns the report,
    also `meta/report.json`. The shard, worker, labels-only and redo options are those of `prepare_lrs`."""
    scan = scan_folder(
        src,
        out,
        name=name,
        manifest=manifest,
        speaker_from=speaker_from,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    info = {
        "source": "folder",
        "dataset": name,
        "root": str(Path(src).resolve()),
        "manifest": str(Path(manifest).resolve()) if manifest is not None else None,
        "speaker_from": scan.speaker_from,
        "splits": {"val": val_fraction, "test": test_fraction},
        "seed": seed,
    }
    extra = {
        "source": "folder",
        "speaker_from": scan.speaker_from,
        "speakers_per_split": {s: len(v) for s, v in scan.speakers.items()},
    }
    report = prepare_clips(
        scan.clips,
        out,
        info,
        shard_index=shard_index,
        shard_count=shard_count,
        workers=workers,
        options=options,
        labels_only=labels_only,
        redo_skipped=redo_skipped,
        progress=progress,
        extra=extra,
    )
    if scan.speakers:
        atomic_write_text(Path(out) / "meta" / "speakers.json", json.dumps(scan.speakers, indent=1) + "\n")
    return report
