"""The one text normaliser of mome, and word error rate (WER) counted with jiwer.

Normalisation (`normalize`), applied to references and hypotheses alike before counting:

    1. Unicode NFKC, then lowercase               "Café"          -> "café"
    2. every character that is not a letter, a digit, an apostrophe or whitespace becomes a space
                                                  "well-known, ok." -> "well known  ok "
    3. apostrophes are kept only inside a word (between two letters or digits)
                                                  "'don't' rock 'n' roll" -> "don't rock n roll"
    4. whitespace is collapsed and trimmed        "a   b " -> "a b"

Digits stay as they are: no number is spelled out or converted (the synthetic corpus spells GRID digits as
words, and LRS2/LRS3 transcripts are written in words too, so rewriting numbers would only hide errors).
Punctuation becomes a space rather than vanishing, so a hyphen or slash never glues two words into one.

Corpus WER = (substitutions + deletions + insertions) / reference words, summed over the corpus (not a mean
of per-utterance WERs). Counts come from jiwer's Levenshtein alignment on the normalised words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import jiwer

_NOT_WORD = re.compile(r"[^\w\s']|_")  # `\w` is letters, digits and `_`; `_` is punctuation here
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")  # an apostrophe not between two word characters
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Normalise a transcript for WER (see the module docstring for the exact rules)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")  # typographic apostrophe
    text = _NOT_WORD.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub("", text)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class ErrorCounts:
    """Word-level edit counts of one utterance (or a sum of utterances)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference word; `inf` with errors but no reference words, 0 for an empty pair."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_words

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.ref_words + other.ref_words,
        )


def utterance_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Edit counts between one reference and one hypothesis, both normalised here first."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:  # jiwer refuses an empty reference: every hypothesis word is an insertion
        return ErrorCounts(insertions=len(hyp.split()))
    if not hyp:
        n = len(ref.split())
        return ErrorCounts(deletions=n, ref_words=n)
    out = jiwer.process_words(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(ref.split()))


def total(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    """Sum of edit counts; `total(...).wer` is the corpus WER."""
    out = ErrorCounts()
    for c in counts:
        out = out + c
    return out


_CHARACTERS = jiwer.ReduceToListOfListOfChars()


def character_errors(reference: str, hypothesis: str) -> int:
    """Character edits (S + D + I) between two strings taken as they are, spaces included, for CER: no
    `normalize`, since a character vocabulary (CTC) defines its own text. Counted with jiwer, like the WER."""
    if not reference or not hypothesis:  # jiwer refuses an empty reference
        return len(reference) + len(hypothesis)
    out = jiwer.process_characters(
        reference, hypothesis, reference_transform=_CHARACTERS, hypothesis_transform=_CHARACTERS
    )
    return out.substitutions + out.deletions + out.insertions


def marked_errors(reference: str, hypothesis: str) -> str:
    """The hypothesis in Markdown with its word errors marked against the reference (both normalised):
    a substitution `~~ref~~ **hyp**`, a deletion `~~ref~~`, an insertion `**hyp**`, correct words plain."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not ref or not hyp:  # jiwer refuses an empty side
        return " ".join([f"~~{w}~~" for w in ref] + [f"**{w}**" for w in hyp])
    words = []
    for chunk in jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]:
        gone = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        new = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "equal":
            words += new
        else:  # substitute / delete / insert: what was said struck out, what was heard in bold
            words += [f"~~{w}~~" for w in gone if chunk.type != "insert"]
            words += [f"**{w}**" for w in new if chunk.type != "delete"]
    return " ".join(words)


def reference_hits(reference: str, hypothesis: str) -> list[tuple[str, bool]]:
    """Each normalised reference word and whether the alignment found it in the hypothesis (False: substituted
    or deleted), for error rates per kind of word. Insertions belong to no reference word: not counted here."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not ref or not hyp:  # jiwer refuses an empty side
        return [(w, False) for w in ref]
    hits: list[tuple[str, bool]] = []
    for chunk in jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]:
        if chunk.type != "insert":
            hits += [(w, chunk.type == "equal") for w in ref[chunk.ref_start_idx : chunk.ref_end_idx]]
    return hits
