"""`mome demo` end to end on the tiny preset: every stage runs, the one model's report covers AVSR, ASR and VSR
(with the per-word-class table), and a rerun skips every stage (nothing is retrained or re-evaluated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mome.errors import UserError
from mome.synthetic.corpus import synthesize_corpus
from mome.workflows import pipeline
from mome.workflows.demo import DemoOptions, run_demo

pytestmark = pytest.mark.slow

FAST = [
    "data.num_workers=0",
    "data.max_frames=120",
    "train.num_threads=1",
    "train.save_every_steps=2",
    "decode.num_beams=1",
    "decode.max_new_tokens=3",
]


def test_demo_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # A corpus already in place, built with the demo's options, is used as is (the stage is skipped): a small
    # one keeps the test fast.
    synthesize_corpus(
        out / "corpus",
        16,
        seed=3,
        grid_fraction=1.0,
        split_fractions={"train": 0.5, "val": 0.25, "test": 0.25},
        speakers_per_split={"train": 2, "val": 1, "test": 1, "noise": 2},
        babble_seconds=6.0,
        babble_talkers=2,
        workers=1,
        progress=False,
    )
    opts = DemoOptions(
        out=out, seed=3, utterances=16, train_speakers=2, lip_steps=2, steps=2, preset="tiny", overrides=FAST
    )
    report = run_demo(opts)

    text = report.read_text()
    assert "Babble noise: the same model with and without the video" in text
    assert "Where the errors are" in text
    results = json.loads((out / "eval" / "mome" / "results.json").read_text())
    assert results["task"] == "any"
    assert (out / "runs" / "mome" / "checkpoints" / "latest").is_file()
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["avsr"]) == {"a4_v2", "a4_v5", "a16_v2", "a16_v5"}
    assert set(summary["asr"]) == {"a4", "a16"} and set(summary["vsr"]) == {"v2", "v5"}
    for task in ("avsr", "asr", "vsr"):
        for key, cells in summary[task].items():
            assert set(cells) == {"clean", "0", "-5"}, (task, key)
            heard = [snr for snr, wer in cells.items() if wer is not None]
            assert heard == (["clean"] if task == "vsr" else ["clean", "0", "-5"]), (task, key, cells)
            assert key in summary["tokens_per_second"][task] and key in summary["decode_seconds_per_utterance"][task]
    assert set(summary["word_classes"]) <= {"avsr", "asr", "vsr"}
    for combos in summary["word_classes"].values():
        for cells in combos.values():
            assert set(cells) == {"command", "colour", "preposition", "letter", "digit", "adverb"}
            assert all(0 <= v <= 100 for v in cells.values())
    assert summary["steps"] == 2 and summary["precision"] in ("fp32", "bf16") and summary["machine"]
    assert summary["step_plan"] == {"steps": 2, "chosen": "--steps"} and "Steps: 2, as asked" in text
    times = json.loads((out / "timings.json").read_text())
    assert {"corpus", "models", "lip encoder", "features", "train", "eval", "experts"} <= set(times)

    # A second run finds every output in place: same results, no new checkpoints.
    outputs = [*out.rglob("*.pt"), *(out / "eval").rglob("results.json")]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    run_demo(opts)
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after


def test_budget_steps_fit_the_seconds_left_in_multiples_of_50() -> None:
    from mome.workflows.demo import AFTER_TRAINING_STEPS_PER_TEST_UTTERANCE, STEP_RANGE, STEP_TIME_MARGIN, budget_steps

    for precision, margin in STEP_TIME_MARGIN.items():
        for left, step, tests in [(300.0, 0.4, 80), (600.0, 0.64, 80), (640.0, 0.41, 20), (900.0, 0.9, 240)]:
            steps = budget_steps(left, step, precision, tests)
            after = round(AFTER_TRAINING_STEPS_PER_TEST_UTTERANCE * tests)
            assert steps % 50 == 0 and STEP_RANGE[0] <= steps <= STEP_RANGE[1]
            if steps > STEP_RANGE[0]:  # training and the stages after it, at the margin's step time, fit the budget
                assert (steps + after) * step * margin <= left
                assert (steps + 50 + after) * step * margin > left  # and no 50 more would
    assert budget_steps(600.0, 0.3, "fp32", 80) > budget_steps(600.0, 0.6, "fp32", 80)  # a faster machine trains longer
    assert budget_steps(900.0, 0.3, "fp32", 80) > budget_steps(900.0, 0.3, "bf16", 80)  # a bf16 run's steps drift more
    assert budget_steps(900.0, 0.3, "bf16", 240) < budget_steps(900.0, 0.3, "bf16", 80)  # a larger test split
    low, high = STEP_RANGE
    assert budget_steps(10.0, 1.0, "fp32", 80) == low and budget_steps(1e6, 0.01, "bf16", 80) == high


def test_the_step_plan_is_measured_once_and_kept(tmp_path: Path, monkeypatch) -> None:
    from mome.workflows import demo, pipeline

    probes = []
    monkeypatch.setattr(pipeline, "seconds_per_step", lambda cfg: probes.append(cfg) or (0.5, "bf16"))
    stages = pipeline.Stages(tmp_path / "timings.json", "demo")
    stages.times.update({"corpus": 100.0, "lip encoder": 200.0})
    opts = DemoOptions(out=tmp_path, budget_minutes=15)
    plan = demo.plan_steps(opts, stages, "probe-config", 80)  # type: ignore[arg-type]
    assert probes == ["probe-config"] and plan["chosen"] == "budget" and plan["step_seconds"] == 0.5
    spent = plan["seconds_before_training"]
    assert spent >= 300.0 and "step time" in stages.times
    assert plan["steps"] == demo.budget_steps(900 - spent, 0.5, "bf16", 80) and plan["precision"] == "bf16"
    # A rerun (a stopped demo continuing) trains the same run: the stored plan, no new measurement.
    assert demo.plan_steps(DemoOptions(out=tmp_path), stages, "again", 80) == plan and probes == ["probe-config"]
    # --steps wins over the budget, and is what the report will say.
    assert demo.plan_steps(DemoOptions(out=tmp_path, steps=30), stages, "x", 80) == {"steps": 30, "chosen": "--steps"}


def test_seconds_per_step_times_real_steps_in_a_throwaway_folder(tmp_path: Path, monkeypatch) -> None:
    from mome.config import load_config
    from mome.workflows.pipeline import seconds_per_step

    monkeypatch.chdir(tmp_path)
    synthesize_corpus(
        Path("corpus"),
        8,
        seed=5,
        split_fractions={"train": 0.5, "val": 0.25, "test": 0.25},
        speakers_per_split={"train": 2, "val": 1, "test": 1, "noise": 2},
        babble_seconds=6.0,
        babble_talkers=2,
        workers=1,
        progress=False,
    )
    cfg = load_config("tiny", ["data.root=corpus", "train.output_dir=runs/probe", "model.compression.task=any", *FAST])
    seconds, precision = seconds_per_step(cfg, steps=2, warmup=1)
    assert 0 < seconds < 60 and precision == "fp32"  # the tiny preset trains in fp32
    assert not Path("runs").exists()  # the probe leaves no run behind


def test_a_workspace_corpus_built_with_other_options_is_refused(tmp_path: Path) -> None:
    synthesize_corpus(
        tmp_path / "corpus",
        8,
        seed=5,
        grid_fraction=1.0,
        split_fractions={"train": 0.5, "val": 0.25, "test": 0.25},
        speakers_per_split={"train": 2, "val": 1, "test": 1, "noise": 2},
        babble_seconds=0,
        workers=1,
        progress=False,
    )
    same = DemoOptions(out=tmp_path, seed=5, utterances=8, train_speakers=2)
    assert pipeline.corpus(same) == tmp_path / "corpus"
    with pytest.raises(UserError, match=r"built with --train-speakers 2 \(now 128\): pass the same options"):
        pipeline.corpus(DemoOptions(out=tmp_path, seed=5, utterances=8))
    with pytest.raises(UserError, match=r"--seed 5 \(now 0\), --utterances 8 \(now 800\)"):
        pipeline.corpus(DemoOptions(out=tmp_path, train_speakers=2))
    # a corpus of an older version (letter a spoken as i by espeak-ng) is refused whatever its options
    report = json.loads((tmp_path / "corpus" / "meta" / "report.json").read_text())
    del report["version"]
    (tmp_path / "corpus" / "meta" / "report.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match="written by an older mome .corpus version 1, now 2"):
        pipeline.corpus(same)
