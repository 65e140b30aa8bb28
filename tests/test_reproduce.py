"""`mome reproduce`: the claim lines decide from the numbers (both ways), and `--quick` from a fresh working
directory with relative paths writes the report with every method's row and all four claims."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mome.cli import main
from mome.config import load_config
from mome.pipeline import task_overrides
from mome.reproduce import METHODS, ReproduceOptions, jobs
from mome.reproduce_report import claims

COMBOS = ("a4_v2", "a4_v5", "a16_v2", "a16_v5")


def _method(key: str, family: str, clean: list[float], noisy: list[float] | None = None, active: int = 10,
            combos: tuple[str, ...] = COMBOS) -> dict:  # fmt: skip
    noisy = noisy or clean
    return {"key": key, "name": key, "family": family, "active_params": active, "paper_active_params": active,
            "wer": {c: {"clean": w, "0": n} for c, w, n in zip(combos, clean, noisy)}}  # fmt: skip


def _experts(audio: float, video: float, chance: float = 0.2) -> dict:
    return {
        "consistency_mean": {"audio": {"score": audio, "chance": chance}, "video": {"score": video, "chance": chance}}
    }


def _methods(mome_clean: list[float], mome_noisy: list[float], mome_active: int = 5) -> list[dict]:
    return [
        _method("mome-mhsa", "mome", mome_clean, mome_noisy, active=mome_active),
        _method("mtsk-ms", "mtsk", [20, 22, 25, 30], active=8),
        _method("mtsk-ss", "mtsk", [21, 23, 26, 31], active=8),
        _method("llama-avsr-a4-v2", "llama-avsr", [20], combos=("a4_v2",)),
        _method("llama-avsr-a16-v5", "llama-avsr", [35], combos=("a16_v5",)),
        _method("asr", "asr", [15, 20], [40, 50], combos=("a4", "a16")),
    ]


def test_every_claim_holds_when_the_numbers_say_so() -> None:
    experts = {"mome-mhsa-s0": _experts(0.5, 0.4), "mome-mhsa-pergran-s0": _experts(0.23, 0.21)}
    result = claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), experts)
    assert [c["holds"] for c in result] == [True, True, True, True], result
    assert "a16_v5: MoME 22.0 vs mtsk-ms 30.0" in result[0]["evidence"]
    assert "MoME 4.0" in result[1]["evidence"]  # 22 - 18
    assert "+0.250" in result[3]["evidence"] and "+0.020" in result[3]["evidence"]


@pytest.mark.parametrize(
    ("clean", "noisy", "active", "fails"),
    [
        ([18, 20, 27, 22], [30, 31, 45, 46], 5, 0),  # worse than MTSK MS (25) at (16,2)
        ([18, 20, 21, 22], [30, 31, 45, 46], 9, 0),  # more active parameters than MTSK
        (
            [10, 20, 21, 22],
            [30, 31, 45, 46],
            5,
            1,
        ),  # 12 points lost from (4,2) to (16,5): Llama-AVSR lost 15, MTSK SS 10
        ([18, 20, 21, 22], [30, 31, 45, 50], 5, 2),  # AVSR (16,5) at 0 dB no better than ASR a16 (50)
    ],
)
def test_a_claim_that_the_numbers_contradict_does_not_hold(clean, noisy, active, fails) -> None:
    experts = {"mome-mhsa-s0": _experts(0.5, 0.4), "mome-mhsa-pergran-s0": _experts(0.21, 0.19)}
    result = claims(_methods(clean, noisy, active), experts)
    assert [i for i, c in enumerate(result) if not c["holds"]] == [fails], result


def test_the_router_claim_reads_consistency_above_chance_not_raw_scores() -> None:
    # the per-granularity routers score higher in raw terms but only because their chance level is higher
    experts = {
        "mome-mhsa-s0": _experts(0.30, 0.30, chance=0.20),
        "mome-mhsa-pergran-s0": _experts(0.35, 0.35, chance=0.30),
    }
    assert claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), experts)[3]["holds"]
    experts["mome-mhsa-pergran-s0"] = _experts(0.45, 0.45, chance=0.30)
    assert not claims(_methods([18, 20, 21, 22], [30, 31, 45, 46]), experts)[3]["holds"]


def test_the_plan_trains_every_method_once_and_the_seeded_ones_at_every_seed() -> None:
    planned = [job.run for job in jobs(ReproduceOptions(seeds=[3, 7]))]
    assert len(planned) == len(set(planned)) == len(METHODS) + 2
    assert {"mome-mhsa-s3", "mome-mhsa-s7", "mtsk-ms-s3", "mtsk-ms-s7", "llama-avsr-a16-v5-s3"} <= set(planned)
    for method in METHODS:  # each method's overrides make a valid config of the kind it claims to be
        cfg = load_config("demo", [*task_overrides(method.task), *method.overrides])
        kind = cfg.model.adapter.kind
        assert kind == {"mome": "mome", "asr": "mome", "mtsk": method.key, "llama-avsr": "lora"}[method.family]


FAST = ["data.num_workers=0", "data.max_frames=120", "train.num_threads=1", "decode.num_beams=1",
        "decode.max_new_tokens=3"]  # fmt: skip


@pytest.mark.slow
def test_quick_reproduction_from_a_relative_out_writes_every_row_and_claim(corpus: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(corpus, tmp_path / "rep" / "corpus")  # a corpus in place is reused: fast
    assert main(["reproduce", "--quick", "--out", "rep", "--preset", "tiny", "--eval-limit", "2", *FAST]) == 0
    results = json.loads(Path("rep/results.json").read_text())
    methods = {m["key"]: m for m in results["methods"]}
    assert set(methods) == {m.key for m in METHODS}
    assert methods["mome-mhsa"]["seeds"] == [0, 1] and methods["mtsk-ms"]["seeds"] == [0, 1]
    assert set(methods["mome-mhsa"]["wer"]) == set(COMBOS) and set(methods["asr"]["wer"]) == {"a4", "a16"}
    assert set(methods["llama-avsr-a16-v5"]["wer"]) == {"a16_v5"}
    for m in methods.values():
        assert all(set(cells) == {"clean", "0"} for cells in m["wer"].values()), m["key"]
        assert m["active_params"] > 0 and m["stored_params"] > m["active_params"] and m["seconds_per_step"] > 0
        assert m["paper_active_params"] > m["active_params"]  # the paper-size count, beside ours
    assert methods["mome-mhsa"]["decode_seconds_per_utterance"].keys() == set(COMBOS)
    assert [set(c) for c in results["claims"]] == [{"claim", "holds", "evidence"}] * 4
    assert {"mome-mhsa-s0", "mome-mhsa-s1", "mome-mhsa-pergran-s0"} <= set(results["consistency"])
    readme = Path("rep/README.md").read_text()
    for m in METHODS:
        assert f"| {m.label}" in readme, m.label
    assert Path("rep/wer_vs_tokens.png").is_file()
