"""Label files in the auto_avsr / LRS3 layout, read and written with the `csv` module.

One row per utterance, no header:

    dataset,rel_path,input_length,transcript
    synth,synth/train/s03/00012,48,place red at a three soon

`rel_path` is the utterance path relative to the corpus root without extension (media at
`<root>/<rel_path>.mp4` and `.wav`); `input_length` is the number of video frames (25 fps).
The reader also accepts the files of the LLM-AVSR repositories: five columns
(`dataset,rel_path,input_length,token_ids,transcript`, the 4th unused: empty or integers) and `rel_path` ending
in `.mp4`. Any other layout is refused row by row with `file:line` (a 4-column file with an extra trailing
column would otherwise read that column as the transcript).
The csv module quotes transcripts that contain commas or quotes, which the reference code's
`line.split(",")` could not read.

Every physical line is one row: a bad UTF-8 byte, an unterminated quote (a field cannot span lines), a field
over csv's size limit, an absolute or `..` path, or media that resolve outside the corpus root (symlinks
followed) make that row malformed, named `file:line`, and never swallow the rows after it. `dataset` and
`rel_path` keep their exact characters (a trailing space included); only the transcript is stripped.

Per-utterance extras of the synthetic corpus (speaker, engine, voice, grammar, phoneme and viseme timings)
live in `<root>/meta/<split>.jsonl`, one JSON object per line keyed by `rel_path` (`read_metadata`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mome.errors import UserError

log = logging.getLogger(__name__)
MEDIA_SUFFIXES = (".mp4", ".wav")
TOKEN_IDS = re.compile(r"\s*(\d+(\s+\d+)*)?\s*")
"""The unused 4th column of the five-column layout: empty, or the integer token ids auto_avsr writes there."""
LAYOUTS = "dataset,rel_path,input_length,transcript or dataset,rel_path,input_length,token_ids,transcript"


class LabelError(UserError):
    """A malformed label row; the message names the file and line."""


@dataclass(frozen=True)
class LabelRow:
    dataset: str
    rel_path: str
    """Utterance path relative to the corpus root, without extension."""
    input_length: int
    """Number of video frames."""
    transcript: str


def _quote(text: str, limit: int = 80) -> str:
    """`repr` of at most `limit` characters: a message stays one short line whatever the field holds."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def path_problem(rel_path: str) -> str | None:
    """Why `rel_path` cannot name media under a root (absolute, `..`, NUL), or None: a label or list file
    must never make mome read or write outside its folder."""
    if "\x00" in rel_path:
        return f"path {_quote(rel_path)} contains a NUL character"
    if rel_path.startswith("/") or ".." in rel_path.split("/"):
        return f"path {_quote(rel_path)} leaves the root (absolute or '..')"
    return None


def media_path(root: str | Path, rel_path: str, suffix: str) -> Path:
    """`<root>/<rel_path><suffix>`: a row's media file (the suffix is appended, so `spk/utt.001` keeps its dot)."""
    return Path(root, rel_path + suffix)


class RootGuard:
    """Checks that `<root>/<rel_path><suffix>` stays inside `root` once symlinks are followed.

    Resolved directories are cached, so a file costs one `lstat` (a full `resolve` only for a symlink)."""

    def __init__(self, root: str | Path, suffixes: tuple[str, ...] = MEDIA_SUFFIXES) -> None:
        self.root, self.suffixes = Path(os.path.realpath(root)), suffixes
        self._dirs: dict[Path, Path] = {}

    def problem(self, rel_path: str) -> str | None:
        """Why the media of `rel_path` are not inside the root, or None."""
        reason = path_problem(rel_path)
        if reason:
            return reason
        stem = Path(self.root, rel_path)
        if stem.parent not in self._dirs:  # os.path: never raises on a symlink loop or a too-long name
            self._dirs[stem.parent] = Path(os.path.realpath(stem.parent))
        for suffix in self.suffixes:
            path = self._dirs[stem.parent] / (stem.name + suffix)
            target = Path(os.path.realpath(path)) if os.path.islink(path) else path
            if not target.is_relative_to(self.root):
                return f"{stem.name + suffix} resolves to {target}, outside {self.root}"
        return None


def parse_row(fields: list[str], where: str) -> LabelRow:
    """One CSV record -> `LabelRow`; raises `LabelError` naming `where` (`file:line`) and the reason.

    `dataset` and `rel_path` are kept exactly (a name may end in a space); only the transcript is stripped."""
    if len(fields) not in (4, 5):
        raise LabelError(f"{where}: expected 4 or 5 columns, got {len(fields)}")
    if len(fields) == 5 and not TOKEN_IDS.fullmatch(fields[3]):
        raise LabelError(
            f"{where}: unknown column layout: 5 columns whose 4th ({_quote(fields[3], 40)}) is not token ids; "
            f"expected {LAYOUTS} (quote a transcript that holds a comma)"
        )
    dataset, rel_path, length = fields[0], fields[1], fields[2].strip()
    transcript = fields[-1].strip()
    if not dataset.strip() or not rel_path.strip():
        raise LabelError(f"{where}: empty dataset or path column")
    if path_problem(rel_path):
        raise LabelError(f"{where}: {path_problem(rel_path)}")
    try:
        frames = int(length)
    except ValueError:
        raise LabelError(f"{where}: input_length {_quote(length, 40)} is not an integer") from None
    if frames <= 0:
        raise LabelError(f"{where}: input_length {frames} is not positive")
    if not transcript:
        raise LabelError(f"{where}: empty transcript")
    for ext in MEDIA_SUFFIXES:
        rel_path = rel_path.removesuffix(ext)
    return LabelRow(dataset, rel_path, frames, transcript)


def _csv_reason(err: csv.Error) -> str:
    """csv's message in a user's words."""
    text = str(err)
    if "unexpected end of data" in text:
        return "unterminated quote (a field cannot span lines)"
    if "field larger than field limit" in text:
        return f"a field is longer than {csv.field_size_limit()} characters"
    return f"malformed CSV ({text.split(' - ')[0]})"


def _fields(raw: bytes, where: str, first: bool) -> list[str]:
    """One physical line of a label file -> its fields; `LabelError` for bad UTF-8, quoting, size, CR."""
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as err:
        raise LabelError(f"{where}: not UTF-8 text (byte {err.start} of the line)") from None
    text = text.removesuffix("\n").removesuffix("\r")
    try:
        records = list(csv.reader([text], strict=True))
    except csv.Error as err:
        raise LabelError(f"{where}: {_csv_reason(err)}") from None
    fields = records[0] if records else []
    if any("\r" in f for f in fields):
        raise LabelError(f"{where}: a field holds a line break")
    return fields


def _line_row(raw: bytes, where: str, first: bool, guard: RootGuard | None) -> LabelRow | None:
    """One physical line -> its row (None for a blank line); `LabelError` naming `where` otherwise."""
    fields = _fields(raw, where, first)
    if not any(x.strip() for x in fields):
        return None
    row = parse_row(fields, where)
    reason = guard.problem(row.rel_path) if guard else None
    if reason:
        raise LabelError(f"{where}: {reason}")
    return row


def read_labels(
    path: str | Path, strict: bool = False, root: str | Path | None = None
) -> tuple[list[LabelRow], list[str]]:
    """Rows of a label file and the list of problems with the rows that were skipped.

    Each physical line is one row: a quoted field cannot span lines, so one bad quote costs one row, never
    the rest of the file.

    Args:
        strict: raise `LabelError` on the first malformed row instead of skipping it.
        root: corpus root; a row whose media would resolve outside it (symlinks followed) is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    guard = RootGuard(root) if root is not None else None
    rows, problems = [], []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                row = _line_row(raw, f"{path}:{line_no}", line_no == 1, guard)
            except LabelError as err:
                if strict:
                    raise
                log.warning("skipping label row: %s", err)
                problems.append(str(err))
                continue
            if row is not None:
                rows.append(row)
    if problems:
        log.warning("%s: %d malformed row(s) skipped, %d read", path, len(problems), len(rows))
    return rows, problems


def write_labels(path: str | Path, rows: list[LabelRow]) -> None:
    """Write rows (in the given order) with `\\n` line ends, so the file is byte-identical across runs.

    A field may not hold a line break: every line is one row (`read_labels`)."""
    for r in rows:
        if any("\n" in f or "\r" in f for f in (r.dataset, r.rel_path, r.transcript)):
            raise ValueError(f"label row {r.rel_path!r}: a field holds a line break")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for r in rows:
            writer.writerow([r.dataset, r.rel_path, r.input_length, r.transcript])


def write_metadata(path: str | Path, records: list[dict]) -> None:
    """One JSON object per line, keys sorted (deterministic bytes); each record has a `rel_path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")


def read_metadata(root: str | Path, split: str | None = None) -> dict[str, dict]:
    """Per-utterance extras keyed by `rel_path`: speaker, engine (`flite`/`espeak`), voice, grammar
    (`grid`/`open`), split, phonemes and visemes as (name, start_s, end_s). Empty for corpora without
    metadata (real LRS2/LRS3). `split=None` reads every split."""
    meta_dir = Path(root) / "meta"
    files = [meta_dir / f"{split}.jsonl"] if split else sorted(meta_dir.glob("*.jsonl"))
    out: dict[str, dict] = {}
    for file in files:
        if not file.is_file():
            continue
        with open(file, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    out[rec["rel_path"]] = rec
    return out
