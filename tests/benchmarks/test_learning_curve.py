"""benchmarks/learning_curve.py's `--misread` table: the clips whose letter each point lost, the clips most
points lose first, read from the points' own hypotheses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("learning_curve", ROOT / "benchmarks" / "learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hypotheses(out: Path, key: str, rows: list[tuple[str, str, str, str, str]]) -> None:
    path = out / "eval" / key / "hypotheses.jsonl"
    path.parent.mkdir(parents=True)
    lines = [
        json.dumps({"id": i, "snr": snr, "rates": rates, "ref": ref, "hyp": hyp}) for i, snr, rates, ref, hyp in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_table_counts_each_clip_over_the_points_that_lost_its_letter(tmp_path: Path) -> None:
    lc = _script()
    ref_e, ref_q = "place white at e zero please", "bin red by q four now"
    points = [{"variant": "demo-now", "seed": s, "steps": 10} for s in (0, 1)]
    _hypotheses(
        tmp_path,
        "demo-now-s0-n10",
        [
            ("e", "clean", "a4_v2", ref_e, "place white at d zero please"),  # the letter lost
            ("q", "clean", "a4_v2", ref_q, "bin red by u four now"),
            ("q", "0", "a4_v2", ref_q, "bin red by b four now"),  # noisy: not this table's
        ],
    )
    _hypotheses(
        tmp_path,
        "demo-now-s1-n10",
        [
            ("e", "clean", "a4_v2", ref_e, "place white at v zero please"),
            ("q", "clean", "a4_v2", ref_q, "bin red by q four soon"),  # the adverb lost, the letter read
            ("e", "clean", "a16_v5", ref_e, "place white at b zero please"),  # another rate
        ],
    )
    lines = lc.misread_letters(tmp_path, points).splitlines()
    assert len(lines) == 4  # header, rule, two clips
    assert lines[2].split(" | ")[:3] == ["| e", ref_e, "2"]  # lost by both points: listed first
    assert "place white at d zero please" in lines[2] and "place white at v zero please" in lines[2]
    assert lines[3].split(" | ")[:3] == ["| q", ref_q, "1"]
    assert lines[3].endswith("| bin red by u four now | - |")
    # the same hypotheses by context: "at" before e (a vowel-initial name), "by" before q (a consonant)
    by_context = lc.letters_by_context(tmp_path, points, combos=("a4_v2",)).splitlines()
    assert by_context[2:] == ["| at | vowel | 2 | 2 | 100.0 |", "| by | consonant | 2 | 1 | 50.0 |"]
