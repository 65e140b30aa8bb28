"""The offline character tokenizer does what its docstring says (issue 27)."""

from __future__ import annotations

import mome.models.tokenizer as tokenizer_module
from mome.models.tokenizer import CHARACTERS, build_char_tokenizer


def test_its_characters_round_trip_and_others_become_one_unk_each() -> None:
    tok = build_char_tokenizer()
    assert tok.decode(tok.encode(CHARACTERS, add_special_tokens=False)) == CHARACTERS
    ids = tok.encode("café;ü", add_special_tokens=False)
    assert ids.count(tok.unk_token_id) == 3 and len(ids) == 6


def test_the_docstring_says_non_ascii_text_is_lost() -> None:
    doc = " ".join(tokenizer_module.__doc__.split())
    assert "becomes one `<unk>` token and does not come back" in doc and "exactly: any transcript" not in doc
