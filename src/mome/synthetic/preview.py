"""Contact sheet of a corpus: frames of a few utterances with the phoneme and viseme at each frame,
so a person can check that the mouths move with the speech. Written as a PNG with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mome.constants import FPS, MOUTH_CROP_SIZE
from mome.data.labels import read_metadata
from mome.data.media import read_video

_TILE = MOUTH_CROP_SIZE
_LABEL_H = 26


def _phoneme_at(phonemes: list, t: float) -> str:
    for name, start, end in phonemes:
        if start <= t < end:
            return name
    return ""


def write_preview(
    root: str | Path, out_png: str | Path, num_utterances: int = 6, frames_per_row: int = 14, split: str = "test"
) -> Path:
    """Draw `num_utterances` utterances of `split` (one row each: transcript, then frames with the phoneme
    and viseme at the frame centre). Returns the PNG path."""
    meta = read_metadata(root, split)
    if not meta:
        raise FileNotFoundError(f"{root}/meta/{split}.jsonl: no utterances to preview")
    from mome.synthetic.visemes import VISEMES

    rows = []
    items = sorted(meta.items())
    step = max(1, len(items) // num_utterances)  # spread over speakers (rel_path starts with the speaker)
    for rel, rec in items[::step][:num_utterances]:
        frames = read_video(Path(root) / f"{rel}.mp4")
        picks = np.linspace(0, len(frames) - 1, frames_per_row).round().astype(int)
        tiles = []
        for i in picks:
            tile = np.full((_TILE + _LABEL_H, _TILE, 3), 255, np.uint8)
            tile[:_TILE] = frames[i]
            ph = _phoneme_at(rec["phonemes"], (i + 0.5) / FPS)
            vis = VISEMES[rec["frame_visemes"][i]]
            cv2.putText(tile, f"{i}:{ph}", (2, _TILE + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(tile, vis[:12], (2, _TILE + 23), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (160, 0, 0), 1, cv2.LINE_AA)
            tiles.append(tile)
        header = np.full((20, _TILE * frames_per_row, 3), 235, np.uint8)
        title = f'{rel}  [{rec["engine"]}:{rec["voice"]}, {rec["grammar"]}]  "{rec["text"]}"'
        cv2.putText(header, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        rows += [header, np.concatenate(tiles, 1)]
    sheet = np.concatenate(rows, 0)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out_png
