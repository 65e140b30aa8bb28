"""mome: Mixture of Matryoshka Experts for LLM-based audio-visual speech recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from mome.api import Recognizer

__version__ = "0.1.0"


def load(run: str | Path, overrides: list[str] | None = None, device: str = "cpu") -> Recognizer:
    """A trained run (or checkpoint file) ready to transcribe clips: `mome.load("runs/x").transcribe(video=...)`.
    Imported on first use, so that `import mome` stays light (`mome.api`)."""
    from mome.api import load as load_run

    return load_run(run, overrides, device)
