"""Label files in the auto_avsr / LRS3 layout, read and written with the `csv` module.

One row per utterance, no header:

    dataset,rel_path,input_length,transcript
    synth,synth/train/s03/00012,48,place red at a three soon

`rel_path` is the utterance path relative to the corpus root without extension (media at
`<root>/<rel_path>.mp4` and `.wav`); `input_length` is the number of video frames (25 fps).
The reader also accepts the files of the LLM-AVSR repositories: five columns
(`dataset,rel_path,input_length,<unused>,transcript`) and `rel_path` ending in `.mp4`.
The csv module quotes transcripts that contain commas or quotes, which the reference code's
`line.split(",")` could not read.

Per-utterance extras of the synthetic corpus (speaker, engine, voice, grammar, phoneme and viseme timings)
live in `<root>/meta/<split>.jsonl`, one JSON object per line keyed by `rel_path` (`read_metadata`).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mome.errors import UserError

log = logging.getLogger(__name__)


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


def parse_row(fields: list[str], where: str) -> LabelRow:
    """One CSV record -> `LabelRow`; raises `LabelError` naming `where` (`file:line`) and the reason."""
    if len(fields) not in (4, 5):
        raise LabelError(f"{where}: expected 4 or 5 columns, got {len(fields)}")
    dataset, rel_path, length = fields[0].strip(), fields[1].strip(), fields[2].strip()
    transcript = fields[-1].strip()
    if not dataset or not rel_path:
        raise LabelError(f"{where}: empty dataset or path column")
    try:
        frames = int(length)
    except ValueError:
        raise LabelError(f"{where}: input_length {length!r} is not an integer") from None
    if frames <= 0:
        raise LabelError(f"{where}: input_length {frames} is not positive")
    if not transcript:
        raise LabelError(f"{where}: empty transcript")
    for ext in (".mp4", ".wav"):
        rel_path = rel_path.removesuffix(ext)
    return LabelRow(dataset, rel_path, frames, transcript)


def read_labels(path: str | Path, strict: bool = False) -> tuple[list[LabelRow], list[str]]:
    """Rows of a label file and the list of problems with the rows that were skipped.

    Args:
        strict: raise `LabelError` on the first malformed row instead of skipping it.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    rows, problems = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, fields in enumerate(csv.reader(f), start=1):
            if not fields or not any(x.strip() for x in fields):
                continue
            try:
                rows.append(parse_row(fields, f"{path}:{line_no}"))
            except LabelError as err:
                if strict:
                    raise
                log.warning("skipping label row: %s", err)
                problems.append(str(err))
    return rows, problems


def write_labels(path: str | Path, rows: list[LabelRow]) -> None:
    """Write rows (in the given order) with `\\n` line ends, so the file is byte-identical across runs."""
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
