"""mome: Mixture of Matryoshka Experts for LLM-based audio-visual speech recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from mome.inference.api import Recognizer

__version__ = "0.1.0"


def load(
    run: str | Path, overrides: list[str] | None = None, device: str = "cpu", check_base_models: bool = True
) -> Recognizer:
    """A trained run (or checkpoint file, or export) ready to transcribe clips:
    `mome.load("runs/x").transcribe(video=...)`. `check_base_models=False` skips the base-model check (a
    warning instead of an error; `mome.runs.base_models`). Imported on first use, so that `import mome` stays light."""
    from mome.inference.api import load as load_run

    return load_run(run, overrides, device, check_base_models)
