"""`EvaluationResult` reads and writes results.json as the untyped results dict did, byte for byte, and the reports
read from it are unchanged. The files in `golden/` were written by the code before results were typed (commit
1be7109): `evaluate` on the tiny synthetic corpus (paths replaced by `/data/corpus`), and its readers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mome.evaluation.evaluate import markdown
from mome.evaluation.results import DecodeTimes, EvaluationResult, WerCell
from mome.evaluation.wer import ErrorCounts
from mome.workflows.demo_report import demo_results

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def _result(name: str) -> EvaluationResult:
    return EvaluationResult.from_json(json.loads(_golden(name)))


@pytest.mark.parametrize("name", ["results.json", "results_skipped.json"])
def test_results_json_round_trips_byte_for_byte(name: str) -> None:
    result = _result(name)
    assert json.dumps(result.to_json(), indent=2) + "\n" == _golden(name)


def test_the_result_reads_what_the_file_says() -> None:
    result = _result("results.json")
    data = json.loads(_golden("results.json"))
    assert result.info == {"checkpoint": "ckpt", "overrides": ["x=1"]}
    assert result.snrs == ("clean", "0")
    assert [c.key for c in result.combinations] == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    cell = result.cell("a16_v5", "0")
    raw = data["wer"]["all"]["a16_v5"]["0"]
    assert cell == WerCell(
        raw["wer"], raw["errors"], raw["ref_words"], raw["sub"], raw["del"], raw["ins"], raw["utterances"]
    )
    assert result.tokens_per_second()["a16_v5"] == 50 / 16 + 25 / 5
    assert result.decodes() == sum(c["utterances"] for cells in data["wer"]["all"].values() for c in cells.values())
    assert result.policies["cascade"].ladder == tuple(data["policies"]["cascade"]["ladder"])


@pytest.mark.parametrize("name", ["results", "results_skipped"])
def test_markdown_is_unchanged(name: str) -> None:
    assert markdown(_result(f"{name}.json")) == _golden(f"{name}.md")


def test_the_command_line_table_is_group_all_only() -> None:
    assert markdown(_result("results.json"), groups=["all"]) == _golden("results_all.md")


def test_wer_percent_is_unchanged() -> None:
    assert _result("results.json").wer_percent() == json.loads(_golden("wer_percent.json"))


def test_the_demo_summary_is_unchanged(tmp_path: Path) -> None:
    decode_times = DecodeTimes(seconds_per_utterance={"a4_v2": 0.12345, "a16_v5": 0.5})
    summary = demo_results(_result("results.json"), decode_times, {"eval": 1.0}, tmp_path / "no_hypotheses.jsonl")
    assert json.dumps(summary, indent=2) + "\n" == _golden("demo_summary.json")


def test_decode_times_round_trip_and_a_file_cut_short_reads_empty(tmp_path: Path) -> None:
    times = DecodeTimes({"a4_v2": 0.05}, {"a4_v2": 80}, 8, 1, "bf16", None, 2, {"cascade": {"clean": 0.04}})
    path = tmp_path / "decode_times.json"
    path.write_text(json.dumps(times.to_json()))
    assert DecodeTimes.read(path) == times
    assert "policies" not in DecodeTimes({"a4_v2": 0.05}).to_json()  # written only where a policy was scored
    path.write_text(json.dumps(times.to_json())[:20])  # what a killed writer leaves
    assert DecodeTimes.read(path) == DecodeTimes() and DecodeTimes.read(tmp_path / "absent.json") == DecodeTimes()


def test_results_written_before_the_precision_was_recorded_still_read() -> None:
    """No `precision`, `precision_reason` or `quantize` under `decode`, no `policies`: fp32, no note."""
    data = json.loads(_golden("results.json"))
    for key in ("precision", "precision_reason", "quantize"):
        del data["decode"][key]
    del data["policies"]
    result = EvaluationResult.from_json(data)
    assert (result.decode.precision, result.decode.quantize, result.policies) == (None, "none", {})
    assert markdown(result) == _golden("results_old.md")


def test_info_cannot_shadow_a_field_of_results_json() -> None:
    with pytest.raises(ValueError, match="info may not set results.json's own fields: name"):
        replace(_result("results.json"), info={"checkpoint": "ckpt", "name": "other"})


def test_an_empty_cell_has_no_percent() -> None:
    assert WerCell.of([]).percent is None
    assert WerCell.of([ErrorCounts(1, 0, 1, 8)]).percent == 25.0
