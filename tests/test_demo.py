"""`mome demo` end to end on the tiny preset: every stage runs, the report covers AVSR, ASR and VSR, and a
rerun skips every stage (nothing is retrained or re-evaluated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mome.demo import DemoOptions, run_demo
from mome.synthetic.corpus import synthesize_corpus

pytestmark = pytest.mark.slow

FAST = ["data.num_workers=0", "data.max_frames=120", "train.num_threads=1", "train.save_every_steps=2",
        "decode.num_beams=1", "decode.max_new_tokens=3"]  # fmt: skip


def test_demo_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # A corpus already in place is used as is (the stage is skipped): a small one keeps the test fast.
    synthesize_corpus(
        out / "corpus", 16, seed=3, split_fractions={"train": 0.5, "val": 0.25, "test": 0.25},
        speakers_per_split={"train": 2, "val": 1, "test": 1, "noise": 2},
        babble_seconds=6.0, babble_talkers=2, workers=1, progress=False,
    )  # fmt: skip
    opts = DemoOptions(out=out, lip_steps=2, avsr_steps=2, asr_steps=2, vsr_steps=2, preset="tiny", overrides=FAST)
    report = run_demo(opts)

    text = report.read_text()
    assert "Babble noise: AVSR vs ASR" in text
    for task in ("avsr", "asr", "vsr"):
        results = json.loads((out / "eval" / task / "results.json").read_text())
        snrs = {snr for combos in results["wer"]["all"].values() for snr in combos}
        assert snrs == ({"clean"} if task == "vsr" else {"clean", "5", "0", "-5"}), (task, snrs)
        assert (out / "runs" / task / "checkpoints" / "latest").is_file()
        assert f"eval/{task}/wer_vs_tokens.png" in text
    times = json.loads((out / "timings.json").read_text())
    assert {"corpus", "models", "lip encoder", "train avsr", "train asr", "train vsr", "eval vsr"} <= set(times)

    # A second run finds every output in place: same results, no new checkpoints.
    outputs = [*out.rglob("*.pt"), *(out / "eval").rglob("results.json")]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    run_demo(opts)
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after
