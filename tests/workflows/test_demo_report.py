"""The demo report's per-word-class errors: each GRID slot's lost words, per rate combination, clean only."""

from __future__ import annotations

import json
from pathlib import Path

from mome.synthetic.grammar import GRID_WORDS, grid_word_classes
from mome.workflows.demo_report import word_class_errors


def test_grid_word_classes_name_the_slots_of_grid_sentences_only() -> None:
    assert grid_word_classes("place blue at a six now") == list(GRID_WORDS)
    assert grid_word_classes("place blue at a six") is None  # a word short
    assert grid_word_classes("the dog ate my homework again today") is None


def test_word_class_errors_count_lost_letters_and_digits_per_rate(tmp_path: Path) -> None:
    records = [
        ("a4_v2", "clean", "place blue at i six now", "place blue by x four now"),  # preposition, letter, digit
        ("a4_v2", "clean", "set red with b two soon", "set red with b two soon"),
        ("a4_v2", "0", "set red with b two soon", "bin green by c one again"),  # noisy: not counted
        ("a16_v5", "clean", "lay white in z nine please", "lay white in nine please"),  # letter deleted
        ("a16_v5", "clean", "the dog ran home", "a dog ran"),  # not GRID: left out
    ]
    path = tmp_path / "hypotheses.jsonl"
    path.write_text(
        "".join(json.dumps({"rates": r, "snr": s, "ref": ref, "hyp": hyp}) + "\n" for r, s, ref, hyp in records)
    )
    classes = word_class_errors(path)
    assert classes["a4_v2"] == {
        "command": 0.0,
        "colour": 0.0,
        "preposition": 50.0,
        "letter": 50.0,
        "digit": 50.0,
        "adverb": 0.0,
    }
    assert classes["a16_v5"]["letter"] == 100.0 and sum(classes["a16_v5"].values()) == 100.0
