"""Sentence grammars of the synthetic corpus, and the rule that keeps test sentences out of training.

Two grammars:
- `grid`: the closed GRID grammar `<command> <colour> <preposition> <letter> <digit> <adverb>`
  (4 * 4 * 4 * 25 * 10 * 4 = 64,000 sentences, 51 words). WER is exact and the task is easy.
- `open`: templates over `vocabulary.py` (> 1,000 words) that read like ordinary English, so that the
  language prior of an LLM helps, as on LRS3.

Held-out sentences: every sentence text is assigned to a partition by a stable hash of its text
(`sentence_partition`), and each split only accepts sentences of its own partition. A test sentence
therefore never appears in training, whatever the seed or corpus size.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from mome.synthetic import vocabulary as V

GRAMMARS = ("grid", "open")

GRID_WORDS = {
    "command": ["bin", "lay", "place", "set"],
    "colour": ["blue", "green", "red", "white"],
    "preposition": ["at", "by", "in", "with"],
    "letter": list("abcdefghijklmnopqrstuvxyz"),  # GRID has no "w" (three syllables)
    "digit": "zero one two three four five six seven eight nine".split(),
    "adverb": ["again", "now", "please", "soon"],
}


def grid_word_classes(text: str) -> list[str] | None:
    """The GRID slot (`command`, `colour`, ..., `adverb`) of each word of a GRID sentence; None for any other."""
    words = text.split()
    if len(words) != len(GRID_WORDS) or any(w not in GRID_WORDS[slot] for w, slot in zip(words, GRID_WORDS)):
        return None
    return list(GRID_WORDS)


# Partition of the sentence space by hash: 1/20 test, 1/20 validation, the rest training.
_PARTITIONS = 20


LETTER_A_SPOKEN = "eigh"
"""How the TTS engines are asked to say the GRID letter "a" (see `Sentence.spoken`)."""


@dataclass(frozen=True)
class Sentence:
    text: str
    """Transcript (lowercase words separated by single spaces)."""
    grammar: str
    """`grid` or `open`."""

    def spoken(self) -> str:
        """Text given to the TTS engine. Both engines read a lone "a" as the article (schwa); in GRID
        it is the letter, so it is spelled "eigh" there (the transcript keeps "a"): the one spelling that both
        read as the letter's name, where espeak-ng reads "ay" as "aye", the letter i."""
        if self.grammar != "grid":
            return self.text
        return " ".join(LETTER_A_SPOKEN if w == "a" else w for w in self.text.split())


def sentence_partition(text: str) -> str:
    """`train`, `val` or `test`: a fixed function of the sentence text (crc32), independent of seeds."""
    bucket = zlib.crc32(text.encode("utf-8")) % _PARTITIONS
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def grid_sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(GRID_WORDS[slot]) for slot in GRID_WORDS)


def _np(rng: random.Random) -> str:
    """A noun phrase: determiner, optional adjective, noun."""
    adj = f"{rng.choice(V.ADJECTIVES)} " if rng.random() < 0.6 else ""
    return f"{rng.choice(V.DETERMINERS)} {adj}{rng.choice(V.NOUNS)}"


def _verb(rng: random.Random) -> tuple[str, str]:
    return rng.choice(V.VERBS)


OPEN_TEMPLATES = [
    lambda r: f"{_np(r)} {_verb(r)[1]} {_np(r)} {r.choice(V.TIMES)}",
    lambda r: f"{r.choice(V.NAMES)} {_verb(r)[1]} {_np(r)} {r.choice(V.PREPOSITIONS)} the {r.choice(V.PLACES)}",
    lambda r: f"we will {_verb(r)[0]} {_np(r)} {r.choice(V.TIMES)}",
    lambda r: f"please {_verb(r)[0]} {_np(r)} before {r.choice(V.TIMES)}".replace("before on ", "before "),
    lambda r: f"{r.choice(V.NAMES)} said that {_np(r)} was {r.choice(V.DEGREES)} {r.choice(V.ADJECTIVES)}",
    lambda r: f"my {r.choice(V.RELATIVES)} {_verb(r)[1]} {_np(r)} at the {r.choice(V.PLACES)}",
    lambda r: f"why did {r.choice(V.NAMES)} {_verb(r)[0]} {_np(r)}",
    lambda r: (
        f"{r.choice(V.NAMES)} and {r.choice(V.NAMES)} met {r.choice(V.PREPOSITIONS)} the "
        f"{r.choice(V.PLACES)} {r.choice(V.TIMES)}"
    ),
    lambda r: f"i think {_np(r)} is {r.choice(V.DEGREES)} {r.choice(V.ADJECTIVES)}",
    lambda r: f"do not {_verb(r)[0]} {_np(r)} {r.choice(V.PREPOSITIONS)} {_np(r)}",
    lambda r: (
        f"the {r.choice(V.NOUNS)} {r.choice(V.PREPOSITIONS)} the {r.choice(V.PLACES)} looked "
        f"{r.choice(V.ADJECTIVES)} {r.choice(V.TIMES)}"
    ),
    lambda r: f"{r.choice(V.NAMES)} wanted to {_verb(r)[0]} {_np(r)} and {_verb(r)[0]} {_np(r)}",
]


def open_sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(OPEN_TEMPLATES)(rng).split())


def sample_sentences(rng: random.Random, n: int, split: str, grid_fraction: float) -> list[Sentence]:
    """`n` sentences of `split`'s hash partition; about `grid_fraction` of them from the GRID grammar.

    Sentences are unique within the call while the partition has enough of them (GRID test has 3,200).
    """
    out: list[Sentence] = []
    seen: set[str] = set()
    for _ in range(n):
        grammar = "grid" if rng.random() < grid_fraction else "open"
        make = grid_sentence if grammar == "grid" else open_sentence
        for attempt in range(10_000):
            text = make(rng)
            if sentence_partition(text) == split and (text not in seen or attempt > 2_000):
                break
        seen.add(text)
        out.append(Sentence(text, grammar))
    return out


def vocabulary(grammar: str) -> set[str]:
    """All words a grammar can produce (for tests and for reporting out-of-vocabulary rates)."""
    if grammar == "grid":
        return {w for words in GRID_WORDS.values() for w in words}
    words = set(V.NOUNS) | set(V.ADJECTIVES) | {w for pair in V.VERBS for w in pair} | set(V.NAMES)
    words |= set(V.PLACES) | {w for t in V.TIMES for w in t.split()} | set(V.DEGREES)
    words |= set(V.PREPOSITIONS) | set(V.DETERMINERS) | set(V.RELATIVES)
    return words | set(
        "we will please before said that was my at why did and met i think is do not looked wanted to the".split()
    )
