"""`mome demo` after a stop: the interrupted stage is named with the way to continue and a nonzero code, and an
evaluation is reused only while it was computed from the run's current checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

import mome.workflows.demo as demo
from mome.cli import main
from mome.config import load_config
from mome.errors import Interrupted
from mome.training.recipe import train
from mome.workflows import pipeline

FAST = [
    "data.max_frames=120",
    "data.num_workers=0",
    "train.num_threads=1",
    "train.val_max_batches=1",
    "train.save_every_steps=2",
    "decode.num_beams=1",
    "decode.max_new_tokens=2",
]


def _stub_stages(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pipeline, "corpus", lambda ws: tmp_path)
    monkeypatch.setattr(pipeline, "models", lambda cfg: None)
    monkeypatch.setattr(pipeline, "lip_encoder", lambda ws, corpus, preset: tmp_path / "lip.pt")
    monkeypatch.setattr(pipeline, "run_config", lambda *args: None)
    monkeypatch.setattr(pipeline, "features", lambda cfg, snrs: None)
    monkeypatch.setattr(pipeline, "seconds_per_step", lambda cfg: (0.5, "fp32"))  # the budget's probe
    monkeypatch.setattr(demo, "eval_utterances", lambda opts, cfg: 80)  # the stubbed corpus has no test split


def test_an_interrupted_training_stage_stops_the_demo_with_its_code(monkeypatch, tmp_path, capsys) -> None:
    _stub_stages(monkeypatch, tmp_path)

    def interrupted(cfg):
        raise Interrupted("train runs/avsr (step 4): interrupted by SIGTERM; saved step-00000004.pt", 143)

    monkeypatch.setattr(pipeline, "train", interrupted)
    monkeypatch.setattr(pipeline, "evaluate_run", lambda ws, name: pytest.fail("evaluated a half-trained model"))
    assert main(["demo", "--out", str(tmp_path / "out"), "--preset", "tiny"]) == 143
    err = capsys.readouterr().err
    assert "demo stopped at stage 'train'" in err and "rerun the same `mome demo` command" in err
    assert not (tmp_path / "out" / "README.md").exists()


def test_sigterm_in_another_stage_stops_the_demo_with_143(monkeypatch, tmp_path) -> None:
    _stub_stages(monkeypatch, tmp_path)

    def models(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        pytest.fail("SIGTERM did not stop the stage")

    monkeypatch.setattr(pipeline, "models", models)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="demo stopped at stage 'models'") as err:
        demo.run_demo(demo.DemoOptions(out=tmp_path / "out", preset="tiny"))
    assert err.value.code == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the demo's only while it runs


def test_cached_results_are_recomputed_when_the_checkpoint_changes(corpus, tmp_path) -> None:
    opts = demo.DemoOptions(out=tmp_path, eval_limit=1, snrs=[None])
    run = tmp_path / "runs" / "avsr"
    overrides = [f"data.root={corpus}", f"train.output_dir={run}", *FAST]
    train(load_config("tiny", [*overrides, "train.max_steps=2"]))
    results = tmp_path / "eval" / "avsr" / "results.json"
    first = pipeline.evaluate_run(opts, "avsr")
    assert first.info["source"]["step"] == 2 and len(first.info["source"]["sha256"]) == 64
    mtime = results.stat().st_mtime_ns
    assert pipeline.evaluate_run(opts, "avsr").to_json() == json.loads(results.read_text())  # reused ...
    assert results.stat().st_mtime_ns == mtime  # ... not recomputed

    train(load_config("tiny", [*overrides, "train.max_steps=4"]))  # the run is trained further
    second = pipeline.evaluate_run(opts, "avsr")
    assert second.info["source"]["step"] == 4 and json.loads(results.read_text())["source"]["step"] == 4
    results.write_text('{"wer": ')  # cut short by a kill: evaluated again, not a traceback
    assert pipeline.evaluate_run(opts, "avsr").info["source"] == second.info["source"]
    opts.snrs = [None, 0.0]  # other conditions: evaluated again, not the clean-only results
    assert json.loads(results.read_text())["snrs"] == ["clean"]
    assert pipeline.evaluate_run(opts, "avsr").snrs == ("clean", "0")
