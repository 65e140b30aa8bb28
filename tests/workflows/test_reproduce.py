"""`mome reproduce`: the claim lines decide from the numbers (both ways), and `--quick` from a fresh working
directory with relative paths writes the report with every method's row and all four claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mome.cli import main
from mome.config import load_config
from mome.errors import UserError
from mome.evaluation.bootstrap import Samples
from mome.workflows import reproduce_report
from mome.workflows.pipeline import task_overrides
from mome.workflows.reproduce import curriculum_overrides
from mome.workflows.reproduce_plan import METHODS, ReproduceOptions, jobs
from mome.workflows.reproduce_report import Claim, MethodResult, claims, command_line, wer_cells, write_report
from tiny import FAST_RUN

COMBOS = ("a4_v2", "a4_v5", "a16_v2", "a16_v5")


def _method(
    key: str,
    family: str,
    clean: list[float],
    noisy: list[float] | None = None,
    active: int = 10,
    combos: tuple[str, ...] = COMBOS,
) -> MethodResult:
    noisy = noisy or clean
    return MethodResult(
        key,
        key,
        family,
        active_params=active,
        paper_active_params=active,
        wer={c: {"clean": w, "0": n} for c, w, n in zip(combos, clean, noisy)},
    )


UTTERANCES, WORDS = 200, 10


def _spread(wer: float) -> np.ndarray:
    """Per-utterance errors of `wer` % over UTTERANCES utterances of WORDS words, spread as evenly as they go."""
    total = round(wer / 100 * UTTERANCES * WORDS)
    edges = np.floor(np.arange(UTTERANCES + 1) * total / UTTERANCES)
    return np.diff(edges)


def _cells(methods: list[MethodResult], seeds: dict[str, list[MethodResult]] | None = None) -> dict:
    """Per-utterance WER cells of every method's table (or of each seed's table in `seeds`)."""
    cells = {}
    for m in methods:
        tables = [t.wer for t in (seeds or {}).get(m.key, [m])]
        for combo, snrs in m.wer.items():
            for snr in snrs:
                errors = np.stack([_spread(t[combo][snr]) for t in tables])
                cells[(m.key, combo, snr)] = Samples(errors, np.full(errors.shape, float(WORDS)), m.key)
    return cells


def _modality(score: float, chance: float) -> dict:
    """Per-utterance consistency sums of 50 utterances whose score moves +-0.05 around `score`."""
    n = 50
    wobble = 0.05 * np.where(np.arange(n) % 2 == 0, 1, -1)
    return {
        "score": score,
        "chance": chance,
        "excess": score - chance,
        "p_value": 0.001,
        "utterances": {
            "index": list(range(n)),
            "score": list(score + wobble),
            "chance": [chance] * n,
            "weight": [1.0] * n,
        },
    }


def _experts(audio: float, video: float, chance: float = 0.2) -> dict:
    return {"consistency_mean": {"audio": _modality(audio, chance), "video": _modality(video, chance)}}


def _methods(
    mome_clean: list[float],
    mome_noisy: list[float],
    mome_active: int = 5,
    small_clean: list[float] | None = None,
    small_active: int = 4,
) -> list[MethodResult]:
    """MoME-MHSA, mome-small (2 points below MTSK MS at every combination unless `small_clean`), MTSK MS and SS,
    Llama-AVSR and ASR."""
    return [
        _method("mome-mhsa", "mome", mome_clean, mome_noisy, active=mome_active),
        _method("mome-small", "mome", small_clean or [18, 20, 23, 28], active=small_active),
        _method("mtsk-ms", "mtsk", [20, 22, 25, 30], active=8),
        _method("mtsk-ss", "mtsk", [21, 23, 26, 31], active=8),
        _method("llama-avsr-a4-v2", "llama-avsr", [20], combos=("a4_v2",)),
        _method("llama-avsr-a16-v5", "llama-avsr", [35], combos=("a16_v5",)),
        _method("asr", "asr", [15, 20], [40, 50], combos=("a4", "a16")),
    ]


def _claims(methods: list[MethodResult], experts: dict, **kwargs) -> list[Claim]:
    return claims(methods, experts, _cells(methods, kwargs.pop("seeds", None)), draws=500, **kwargs)


SOUND = {"mome-mhsa-s0": _experts(0.5, 0.4), "mome-mhsa-pergran-s0": _experts(0.23, 0.21)}


def test_every_claim_holds_when_the_numbers_say_so() -> None:
    result = _claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), SOUND)
    assert [c.verdict for c in result] == ["holds"] * 4, result
    assert "a16_v5: MoME 22.0 vs mtsk-ms 30.0 (-8.0 [" in result[0].evidence
    assert "MoME 4.0" in result[1].evidence  # 22 - 18
    first = result[0].differences[0]  # a4_v2: MoME 18 against MTSK MS 20, in WER points
    assert first.estimate == pytest.approx(-2.0) and first.low < -2 < first.high < 0
    assert all(d.verdict == "holds" for c in result for d in c.differences)
    assert "audio: shared +0.300 (p 0.001)" in result[3].evidence, result[3].evidence


@pytest.mark.parametrize(
    ("clean", "noisy", "active", "claim", "verdict"),
    [
        ([18, 20, 27, 22], [30, 31, 45, 46], 5, 0, "does not hold"),  # worse than MTSK MS (25) at (16,2)
        ([18, 20, 25, 22], [30, 31, 45, 46], 5, 0, "inconclusive"),  # the same as MTSK MS (25) at (16,2)
        ([18, 20, 21, 22], [30, 31, 45, 46], 9, 0, "does not hold"),  # more active parameters than MTSK
        ([10, 20, 21, 22], [30, 31, 45, 46], 5, 1, "does not hold"),  # loses 12 points; MTSK SS 10
        ([18, 20, 21, 22], [30, 31, 45, 55], 5, 2, "does not hold"),  # AVSR (16,5) at 0 dB worse than ASR a16 (50)
        ([18, 20, 21, 22], [30, 31, 45, 50], 5, 2, "inconclusive"),  # ... and no better
    ],
)
def test_a_claim_follows_its_intervals(clean, noisy, active, claim, verdict) -> None:
    result = _claims(_methods(clean, noisy, active), SOUND)
    assert result[claim].verdict == verdict, result[claim]
    assert [c.verdict for i, c in enumerate(result) if i != claim] == ["holds"] * 3, result


@pytest.mark.parametrize(
    ("small_clean", "small_active", "verdict"),
    [
        ([18, 20, 23, 28], 4, "holds"),
        ([18, 24, 23, 28], 4, "does not hold"),  # worse than MTSK MS (22) at (4,5)
        ([18, 22, 23, 28], 4, "inconclusive"),  # the same as MTSK MS (22) at (4,5)
        ([18, 20, 23, 28], 8, "does not hold"),  # as many active parameters as MTSK at this width
    ],
)
def test_claim_1_is_judged_on_the_small_mome_at_this_width(small_clean, small_active, verdict) -> None:
    methods = _methods([18, 20, 21, 22], [30, 31, 45, 46], small_clean=small_clean, small_active=small_active)
    for m in methods:  # the paper's size does not save the small MoME: only this width's count is its premise
        m.paper_active_params = {"mome-small": 1, "mome-mhsa": 5}.get(m.key, 8)
    claim = _claims(methods, SOUND)[0]
    assert claim.verdict == verdict, claim
    assert claim.evidence.startswith("the preset's MoME: holds; a4_v2: MoME 18.0 vs mtsk-ms 20.0 (")
    small = [d for d in claim.differences if d.what.startswith("WER a4_v5 clean: mome-small - ")]
    assert [d.what[-7:] for d in small] == ["mtsk-ms", "mtsk-ss"]
    assert small[0].estimate == pytest.approx(small_clean[1] - 22)
    evidence = claim.evidence
    assert f"at this width mome-small ({small_active:,} active params vs mtsk-ms 8, mtsk-ss 8): {verdict}, " in evidence
    assert f"a4_v5: mome-small {small_clean[1]:.1f} vs mtsk-ms 22.0 (" in evidence


def test_claim_1_without_the_small_mome_is_inconclusive() -> None:
    methods = [m for m in _methods([18, 20, 21, 22], [30, 31, 45, 46]) if m.key != "mome-small"]
    claim = _claims(methods, SOUND)[0]
    assert claim.verdict == "inconclusive", claim
    assert "mome-small (fewer active params at this width): not run" in claim.evidence


def test_the_small_mome_has_fewer_active_params_than_every_mtsk_at_the_demo_width() -> None:
    # counted as the report counts them (the model built on the meta device), at the width the runs train at
    by_key = {m.key: m for m in METHODS}
    small, _ = reproduce_report._params("demo", by_key["mome-small"])
    mtsk = {m.key: reproduce_report._params("demo", m)[0] for m in METHODS if m.family == "mtsk"}
    assert set(mtsk) == {"mtsk-ms", "mtsk-ss", "mtsk-mss"}
    assert all(small < active for active in mtsk.values()), (small, mtsk)
    assert reproduce_report._params("demo", by_key["mome-mhsa"])[0] > mtsk["mtsk-ms"]  # why the row exists


def test_seeds_that_disagree_make_a_claim_inconclusive() -> None:
    methods = _methods([18, 20, 21, 22], [30, 31, 45, 46])
    # MoME's two seeds: one far better than MTSK at every rate, one far worse; the mean is the same as above
    seeds = {
        "mome-mhsa": [
            _method("s0", "mome", [8, 10, 11, 12], [30, 31, 45, 46]),
            _method("s1", "mome", [28, 30, 31, 32], [30, 31, 45, 46]),
        ]
    }
    result = _claims(methods, SOUND, seeds=seeds)
    assert result[0].verdict == "inconclusive", result[0]
    interval = result[0].differences[0]
    assert interval.low < 0 < interval.high and interval.estimate == pytest.approx(-2.0)


def test_the_router_claim_reads_consistency_above_chance_not_raw_scores() -> None:
    # the per-granularity routers score higher in raw terms but only because their chance level is higher
    experts = {
        "mome-mhsa-s0": _experts(0.30, 0.30, chance=0.20),
        "mome-mhsa-pergran-s0": _experts(0.35, 0.35, chance=0.30),
    }
    methods = _methods([18, 20, 21, 22], [30, 31, 45, 46])
    assert _claims(methods, experts)[3].verdict == "holds"
    experts["mome-mhsa-pergran-s0"] = _experts(0.45, 0.45, chance=0.30)
    assert _claims(methods, experts)[3].verdict == "does not hold"


def test_the_router_claim_judges_audio_and_video_apart() -> None:
    # far above chance in video, below it in audio: the mean of the two would beat the per-granularity routers
    experts = {"mome-mhsa-s0": _experts(0.15, 0.6), "mome-mhsa-pergran-s0": _experts(0.2, 0.2)}
    claim = _claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), experts)[3]
    assert [d.verdict for d in claim.differences] == ["does not hold", "holds"]
    assert claim.verdict == "does not hold"
    claim = _claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), {"mome-mhsa-s0": _experts(0.5, 0.5)})[3]
    assert claim.verdict == "inconclusive"  # nothing to compare with


def test_the_router_claim_shows_the_step0_control() -> None:
    controls = {"mome-mhsa-s0": _experts(0.26, 0.22)}
    claim = _claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), SOUND, controls=controls)[3]
    assert "untrained routers (step 0): audio +0.060 (p 0.001)" in claim.evidence, claim.evidence


def test_wer_cells_read_every_runs_per_utterance_errors(tmp_path) -> None:
    opts = ReproduceOptions(out=tmp_path, seeds=[0, 1])
    planned = [job for job in jobs(opts) if job.method.key in ("mome-mhsa", "asr")]
    for job in planned:
        rows = [
            {
                "snr": "clean",
                "rates": "a4" if job.method.key == "asr" else "a4_v2",
                "id": f"u{i}",
                "sub": i,
                "del": job.seed,
                "ins": 0,
                "ref_words": 5,
            }
            for i in range(3)
        ]
        (tmp_path / "eval" / job.run).mkdir(parents=True)
        (tmp_path / "eval" / job.run / "hypotheses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cells = wer_cells(opts, planned)
    assert set(cells) == {("mome-mhsa", "a4_v2", "clean"), ("asr", "a4", "clean")}
    np.testing.assert_array_equal(cells[("mome-mhsa", "a4_v2", "clean")].numerator, [[0, 1, 2], [1, 2, 3]])  # 2 seeds
    assert cells[("asr", "a4", "clean")].numerator.shape == (1, 3) and cells[("asr", "a4", "clean")].method == "asr"


def test_the_report_writes_verdicts_intervals_and_the_step0_control(tmp_path, monkeypatch) -> None:
    methods = _methods([18, 20, 21, 22], [30, 31, 45, 46])
    rule = {
        "every_steps": 100,
        "min_gain": 1.0,
        "window": 0.25,
        "min_steps": 800,
        "rates": None,
        "max_utterances": None,
    }
    for i, m in enumerate(methods):
        stop = {"reason": "plateau", "step": 900 + 100 * i, "detail": "..."}
        curve = [{"step": s, "wer": 60.0 - s / 100, "rates": {}} for s in range(100, stop["step"] + 1, 100)]
        vars(m).update(
            seeds=[0],
            stored_params=99,
            paper_stored_params=99,
            seconds_per_step=0.1,
            wer_by_seed={"0": m.wer},
            tokens_per_second={c: 10.0 + i for i, c in enumerate(m.wer)},
            curves={f"{m.key}-s0": {"stop": stop, "cap": 2000, "rule": rule, "curve": curve}},
        )
    methods[-1].curves["asr-s0"]["stop"] = {"reason": "cap", "step": 2000, "detail": "cap of 2000 steps"}
    monkeypatch.setattr(reproduce_report, "method_results", lambda opts, jobs: methods)
    monkeypatch.setattr(reproduce_report, "wer_cells", lambda opts, jobs: _cells(methods))
    controls = {"mome-mhsa-s0": _experts(0.26, 0.22)}
    times = {"train mome-mhsa-s0": 120.0, "report": 1.0}  # a rerun: the earlier report's seconds, left out
    readme = write_report(ReproduceOptions(out=tmp_path), [], SOUND, times, controls).read_text()
    assert "| train mome-mhsa-s0 | 120 |" in readme and "| report |" not in readme and "Wall time: 2 min." in readme
    assert "1. **holds**: MoME's WER is below" in readme and "(-2.0 [" in readme
    assert "| mome-mhsa-s0 (step 0) | 0.260 (0.200, p 0.001) |" in readme
    assert (
        "every 100 steps (the mean WER of its rate combinations) and stops at the first check, from step 800" in readme
    )
    assert "| mome-mhsa-s0 | plateau at step 900 | 51.0 (900) | 100: 59.0, 200: 58.0," in readme
    assert "| mtsk-ms-s0 | plateau at step 1100 |" in readme and "| asr-s0 | cap (2000 steps) |" in readme
    assert "at this width mome-small (4 active params vs mtsk-ms 8, mtsk-ss 8): holds, a4_v2: mome-small 18.0" in readme
    assert (tmp_path / "val_curves.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((tmp_path / "results.json").read_text())
    assert [c["verdict"] for c in results["claims"]] == ["holds"] * 4 and results["timings"] == {
        "train mome-mhsa-s0": 120.0
    }
    assert "utterances" not in results["consistency"]["mome-mhsa-s0"]["audio"]  # the sums stay in experts/<run>
    assert results["consistency_step0"]["mome-mhsa-s0"]["audio"]["excess"] == pytest.approx(0.06)


def test_the_plan_states_the_stop_rule_and_a_time_range() -> None:
    from mome.workflows.reproduce import Estimate, plan

    opts = ReproduceOptions(seeds=[0])
    todo = jobs(opts)
    estimate = Estimate(opts, 4, 80)
    text = plan(opts, todo, estimate, 60.0)
    assert (
        "each until its validation WER stops improving (checked every 100 steps, from step 800) or 2000 steps" in text
    )
    (train_low, eval_low), (train_high, eval_high) = estimate.job_seconds(todo[0], 800), estimate.job_seconds(todo[0])
    assert train_high == pytest.approx(2.5 * train_low) and eval_high == eval_low > 0  # training scales, eval not
    low, high = (round((60.0 + estimate.remaining(todo, s)) / 60) for s in (800, None))
    assert f"estimated {low}-{high} min: every run stopping at step 800 or at the cap" in text
    cfg = load_config("demo", opts.plateau_overrides())  # what every run gets
    assert (cfg.train.plateau.every_steps, cfg.train.plateau.min_steps) == (100, 800)


def test_the_clean_audio_share_is_taken_of_the_minimum_steps_not_of_the_cap() -> None:
    opts = ReproduceOptions()  # min 800 of a 2,000-step cap
    demo = load_config("demo")
    assert curriculum_overrides(opts, demo) == [("data.clean_steps_share", demo.data.clean_steps_share * 0.4)]
    cfg = load_config("demo", curriculum_overrides(opts, demo))
    assert cfg.data.clean_epochs_for(2000, 150) == demo.data.clean_epochs_for(800, 150) > 0  # as a run of 800 steps
    assert curriculum_overrides(opts, load_config("tiny")) == []  # a preset without a curriculum gets none


def test_the_plan_trains_every_method_once_and_the_seeded_ones_at_every_seed() -> None:
    assert ReproduceOptions().seeds == [0, 1, 2]
    seeded = ["mome-mhsa", "mtsk-ms", "mome-small", "mome-mhsa-pergran", "mtsk-ss", "mtsk-mss"]
    assert sorted(m.key for m in METHODS if m.every_seed) == sorted(seeded)
    planned = [job.run for job in jobs(ReproduceOptions(seeds=[3, 7, 9]))]
    assert len(planned) == len(set(planned)) == len(METHODS) + 2 * len(seeded)
    assert {f"{key}-s{seed}" for key in seeded for seed in (3, 7, 9)} <= set(planned)
    assert "llama-avsr-a16-v5-s3" in planned and "llama-avsr-a16-v5-s7" not in planned
    # the runs every claim needs, at every seed, before the ablations: a stopped reproduction has them
    ablations = [
        i
        for i, run in enumerate(planned)
        if run.startswith(("mome-ffn", "mome-layer", "mome-mhsa-noshared", "mome-lb-pooled", "mome-1-1", "mome-4-2"))
    ]
    assert ablations == list(range(len(planned) - 6, len(planned)))
    for method in METHODS:  # each method's overrides make a valid config of the kind it claims to be
        cfg = load_config("demo", [*task_overrides(method.task), *method.overrides])
        kind = cfg.model.adapter.kind
        assert kind == {"mome": "mome", "asr": "mome", "mtsk": method.key, "llama-avsr": "lora"}[method.family]
        if kind == "mome":  # the authors' pooled load balance: one row, every other MoME the per-layer form
            assert (cfg.model.adapter.mome.load_balance == "pooled") == (method.key == "mome-lb-pooled")


def test_methods_choose_the_runs_in_plan_order_and_unknown_keys_fail_in_one_line(capsys) -> None:
    chosen = ReproduceOptions(seeds=[0, 1], methods=["mome-ffn", "mtsk-ms", "asr", "mome-mhsa"])
    planned = [job.run for job in jobs(chosen)]
    # plan order, not the order given: the claims' runs at the first seed, the extra seeds, then the ablations
    assert planned == ["mome-mhsa-s0", "mtsk-ms-s0", "asr-s0", "mome-mhsa-s1", "mtsk-ms-s1", "mome-ffn-s0"]
    assert len(jobs(ReproduceOptions(seeds=[0]))) == len(METHODS)  # None: every method
    with pytest.raises(UserError, match="unknown method.*mome-bogus"):
        ReproduceOptions(methods=["mome-mhsa", "mome-bogus"])
    assert main(["reproduce", "--methods", "mome-mhsa,mome-bogus"]) == 2  # before any stage runs
    assert "mome: error: unknown method(s) mome-bogus; expected some of mome-mhsa," in capsys.readouterr().err


def test_a_run_config_keeps_workspace_paths_that_yaml_would_cut(tmp_path) -> None:
    from mome.workflows.pipeline import run_config

    out = tmp_path / "take #2: babble"  # as text, YAML would read "take" (a comment after " #") or a mapping
    opts = ReproduceOptions(out=out, seeds=[0])
    cfg = run_config(opts, out / "corpus", out / "lip.pt", "avsr", 800, "mome-mhsa-s0", opts.plateau_overrides())
    assert cfg.data.root == str(out / "corpus") and cfg.data.feature_cache == str(out / "features")
    assert cfg.train.output_dir == str(out / "runs" / "mome-mhsa-s0")
    assert cfg.model.encoders.video.path == str(out / "lip.pt")
    assert (cfg.train.max_steps, cfg.train.plateau.every_steps, cfg.name) == (800, 100, "demo-mome-mhsa-s0")


def test_the_report_names_the_command_that_gives_its_options() -> None:
    assert command_line(ReproduceOptions()) == "mome reproduce"
    opts = ReproduceOptions(seeds=[0, 1], steps=1000, methods=["mome-mhsa", "mtsk-ms"], overrides=["a.b=1"])
    assert command_line(opts) == "mome reproduce --steps 1000 --seeds 0,1 --methods mome-mhsa,mtsk-ms a.b=1"
    quick = ReproduceOptions(quick=True, **{**reproduce_report.QUICK, "eval_limit": 2})
    assert command_line(quick) == "mome reproduce --quick --eval-limit 2"


@pytest.mark.slow
def test_quick_reproduction_from_a_relative_out_writes_every_row_and_claim(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the corpus is synthesised by the command, as a new user's would be
    assert main(["reproduce", "--quick", "--out", "rep", "--preset", "tiny", "--eval-limit", "2", *FAST_RUN]) == 0
    results = json.loads(Path("rep/results.json").read_text())
    methods = {m["key"]: m for m in results["methods"]}
    assert set(methods) == {m.key for m in METHODS}
    for key in ("mome-mhsa", "mtsk-ms", "mome-small", "mome-mhsa-pergran", "mtsk-ss", "mtsk-mss"):
        assert methods[key]["seeds"] == [0, 1, 2], key
    assert set(methods["mome-mhsa"]["wer"]) == set(COMBOS) and set(methods["asr"]["wer"]) == {"a4", "a16"}
    assert set(methods["llama-avsr-a16-v5"]["wer"]) == {"a16_v5"}
    for m in methods.values():
        assert all(set(cells) == {"clean", "0"} for cells in m["wer"].values()), m["key"]
        assert m["active_params"] > 0 and m["stored_params"] > m["active_params"] and m["seconds_per_step"] > 0
        assert m["paper_active_params"] > m["active_params"]  # the paper-size count, beside ours
    assert methods["mome-mhsa"]["decode_seconds_per_utterance"].keys() == set(COMBOS)
    assert [set(c) for c in results["claims"]] == [{"claim", "verdict", "evidence", "differences"}] * 4
    assert {c["verdict"] for c in results["claims"]} <= {"holds", "does not hold", "inconclusive"}
    assert all(d["estimate"] is not None for c in results["claims"][:3] for d in c["differences"])  # every cell read
    assert {f"mome-mhsa{k}-s{s}" for k in ("", "-pergran") for s in (0, 1, 2)} <= set(results["consistency"])
    assert set(results["consistency_step0"]) == set(results["consistency"])
    readme = Path("rep/README.md").read_text()
    for m in METHODS:
        assert f"| {m.label}" in readme, m.label
    assert Path("rep/wer_vs_tokens.png").is_file() and Path("rep/val_curves.png").is_file()
    assert "## Validation curves" in readme
    for m in methods.values():  # every run stopped on a plateau or at the cap (4), with its curve (every 2 steps)
        for run, curve in m["curves"].items():
            assert curve["stop"]["reason"] in ("plateau", "cap") and curve["stop"]["step"] in (4,), (run, curve)
            assert [p["step"] for p in curve["curve"]] == [2, 4], (run, curve)
            assert f"| {run} | " in readme
