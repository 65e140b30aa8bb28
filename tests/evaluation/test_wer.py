"""The normaliser's documented rules, and corpus WER = all edits / all reference words."""

import pytest

from mome.evaluation.wer import (
    ErrorCounts,
    character_errors,
    marked_errors,
    normalize,
    reference_hits,
    total,
    utterance_errors,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("PLACE Red at A three", "place red at a three"),  # lowercase
        ("Hello, world!  How are   you?", "hello world how are you"),  # punctuation out, spaces collapsed
        ("well-known/path", "well known path"),  # never glues two words together
        ("don't 'quote' rock 'n' roll", "don't quote rock n roll"),  # apostrophes only inside words
        ("IT\u2019S", "it's"),  # typographic apostrophe
        ("room 101, 3.5", "room 101 3 5"),  # digits as they are
        ("Caf\u00e9", "caf\u00e9"),  # letters beyond ASCII kept
        ("  \t\n", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_utterance_errors_after_normalisation():
    assert utterance_errors("Bin blue at F two now.", "bin blue at f two now") == ErrorCounts(0, 0, 0, 6)
    c = utterance_errors("a b c d", "a x c d e")  # one substitution, one insertion
    assert (c.substitutions, c.deletions, c.insertions, c.ref_words) == (1, 0, 1, 4)
    assert utterance_errors("a b c", "a") == ErrorCounts(0, 2, 0, 3)
    assert utterance_errors("a b", "") == ErrorCounts(0, 2, 0, 2)
    assert utterance_errors("?!", "one two") == ErrorCounts(0, 0, 2, 0)  # empty after normalising
    assert utterance_errors("", "").wer == 0.0


def test_corpus_wer_sums_edits_not_rates():
    refs, hyps = ["a b c d e f g h i j", "x"], ["a b c d e f g h i j", "y"]
    # per-utterance mean would be (0 + 1) / 2 = 0.5; the corpus WER is 1 edit / 11 words
    counts = total([utterance_errors(r, h) for r, h in zip(refs, hyps)])
    assert counts.wer == pytest.approx(1 / 11)
    assert counts.errors == 1


def test_character_errors_count_every_character_as_given():
    assert character_errors("bin blue", "bin blue") == 0
    assert character_errors("bin blue", " bn blue ") == 3  # spaces count, even leading and trailing ones
    assert character_errors("ab", "") == 2 and character_errors("", "abc") == 3 and character_errors("", "") == 0
    assert character_errors("Ab", "ab") == 1  # no normalisation
    assert character_errors("kitten", "sitting") == 3


@pytest.mark.parametrize(
    "ref, hyp, expected",
    [
        ("Bin blue at F two now", "bin blue at f two now", "bin blue at f two now"),
        ("bin blue at f two now", "bin blue at s two", "bin blue at ~~f~~ **s** two ~~now~~"),
        ("bin blue", "place bin blue", "**place** bin blue"),
        ("bin blue", "", "~~bin~~ ~~blue~~"),
        ("", "bin", "**bin**"),
    ],
)
def test_marked_errors_strike_what_was_said_and_bold_what_was_heard(ref, hyp, expected):
    marked = marked_errors(ref, hyp)
    assert marked == expected
    counts = utterance_errors(ref, hyp)  # every counted edit is marked once
    assert marked.count("**") // 2 == counts.substitutions + counts.insertions
    assert marked.count("~~") // 2 == counts.substitutions + counts.deletions


@pytest.mark.parametrize(
    "ref, hyp, expected",
    [
        ("place blue at i six now", "place blue at i six now", [True] * 6),
        ("place blue at i six now", "place blue by x four now", [True, True, False, False, False, True]),
        ("place blue at i six now", "place blue at six now", [True, True, True, False, True, True]),  # deletion
        ("place blue at i six now", "place blue at at i six now", [True] * 6),  # an insertion is no reference word's
        ("place blue", "", [False, False]),
        ("", "place", []),
    ],
)
def test_reference_hits_mark_each_reference_word_found_or_lost(ref, hyp, expected):
    hits = reference_hits(ref, hyp)
    assert [w for w, _ in hits] == normalize(ref).split()
    assert [hit for _, hit in hits] == expected
    lost = sum(not hit for _, hit in hits)
    counts = utterance_errors(ref, hyp)
    assert lost == counts.substitutions + counts.deletions
