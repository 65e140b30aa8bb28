"""benchmarks/paper_scale.py end to end at `--tiny` size: random checkpoints written in the official layouts and
read back through the presets' paths, every phase run in its own process, one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_run_measures_every_phase(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "paper_scale.py"),
        "--tiny",
        "--preset",
        "paper-mtsk-ms",
        "--steps",
        "1",
        "--threads",
        "1",
        "--workdir",
        "work",
        "--json",
        "out.json",
    ]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (result,) = json.loads((tmp_path / "out.json").read_text())["results"]
    models = tmp_path / "work" / "models"
    (written,) = [d for d in models.iterdir() if d.is_dir()]
    assert {p.name for p in written.iterdir()} == {"llm", "whisper", "avhubert.pt"}
    for phase in ("train", "train-cache", "train-pooled", "decode"):
        assert "error" not in result["phases"][phase], result["phases"][phase]
    cached = result["phases"]["train-cache"]
    assert cached["fill"]["train"]["utterances"] > 0
    assert cached["store"]["audio"]["versions_per_train_utterance"] == 5  # clean + 4 noisy (preset defaults)
    pooled = result["phases"]["train-pooled"]["store"]
    for modality in ("audio", "video"):
        assert pooled[modality]["bytes_per_second"] < cached["store"][modality]["bytes_per_second"]
    decode = result["phases"]["decode"]
    assert decode["beam"]["beams"] == 15 and decode["greedy"]["beams"] == 1
    assert "paper-mtsk-ms" in proc.stdout.splitlines()[-2]  # the table's one row
