"""A character-level tokenizer for LLMs built from an architecture alone (tests, `tiny` preset).

A real LLM directory brings its own tokenizer; a randomly initialised LLM built from `llm.arch` needs one
that exists offline. Its vocabulary is `CHARACTERS` (ASCII letters, digits, space and `'.,?!-`): a transcript
made of them is encoded and decoded exactly; any other character (accents, other scripts, `;`) becomes one
`<unk>` token and does not come back. The synthetic corpus and LRS transcripts fit; for other text use a real
LLM directory (its own tokenizer).
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CHARACTERS = string.ascii_lowercase + string.digits + " '.,?!-" + string.ascii_uppercase
"""The whole vocabulary besides the special tokens: anything else is `<unk>`."""


def build_char_tokenizer(with_bos: bool = True) -> PreTrainedTokenizerFast:
    """Character tokenizer with <unk>, </s> (EOS) and, unless `with_bos` is False (like Qwen2), <s> (BOS)."""
    specials = ["<unk>", "</s>"] + (["<s>"] if with_bos else [])
    vocab = {tok: i for i, tok in enumerate(specials + list(CHARACTERS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        eos_token="</s>",
        bos_token="<s>" if with_bos else None,
    )
