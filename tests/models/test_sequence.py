from __future__ import annotations

import torch

from mome.adapters.context import Segment
from mome.config import LLMConfig
from mome.models.llm import load_llm
from mome.models.sequence import IGNORE_INDEX, SequenceBuilder
from tiny import TINY_LLAMA, TINY_QWEN2


def _builder(arch: dict) -> SequenceBuilder:
    llm = load_llm(LLMConfig(arch=dict(arch)))
    return SequenceBuilder(llm.tokenizer, llm.model.get_input_embeddings(), "Transcribe.")


def test_layout_labels_and_mask() -> None:
    b = _builder(TINY_LLAMA)
    audio = [torch.randn(3, 32), torch.randn(5, 32)]
    video = [torch.randn(2, 32), torch.randn(1, 32)]
    targets = b.encode_targets(["ab", "hello"])
    seq = b.build(audio, video, targets, padding_side="right")
    prompt = len(b.prompt_ids_by_task["avsr"])
    lengths = [1 + 2 + 3 + 2 + 2 + prompt + 3, 1 + 2 + 5 + 2 + 1 + prompt + 6]
    assert seq.attention_mask.sum(1).tolist() == lengths
    for r, n in enumerate(lengths):
        assert seq.attention_mask[r, :n].all() and not seq.attention_mask[r, n:].any()  # right padding
        learned = seq.labels[r][seq.labels[r] != IGNORE_INDEX].tolist()
        assert learned == targets[r]  # transcript + EOS only
        assert learned[-1] == b.eos
        # Audio / video positions carry exactly the given tokens.
        assert (seq.segments[r] == Segment.AUDIO).sum() == audio[r].shape[0]
        assert (seq.segments[r] == Segment.VIDEO).sum() == video[r].shape[0]
    torch.testing.assert_close(seq.embeds[1, 2:7], audio[1])  # after BOS, <audio>
    assert seq.embeds.shape[1] == max(lengths)


def test_left_padding_for_generation() -> None:
    b = _builder(TINY_LLAMA)
    seq = b.build([torch.randn(3, 32), torch.randn(6, 32)], None, None, padding_side="left")
    assert seq.labels is None
    assert seq.attention_mask[:, -1].all()  # every row ends where decoding starts
    assert seq.attention_mask[0, :3].sum() == 0


def test_no_bos_tokenizer_qwen2() -> None:
    b = _builder(TINY_QWEN2)
    assert b.bos is None
    seq = b.build([torch.randn(2, 32)], None, b.encode_targets(["x"]), padding_side="right")
    first = b.embeddings(torch.tensor([b.audio_open]))[0]
    torch.testing.assert_close(seq.embeds[0, 0], first)  # starts with <audio>, no BOS
