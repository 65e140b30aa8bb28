"""The one sequence builder: LLM input embeddings, attention mask, labels and token kinds per row.

Each row is one sample at one Matryoshka granularity:

    [BOS] <audio> A_1..A_Na </audio> <video> V_1..V_Nv </video> prompt  y_1..y_M [EOS]
    labels: -100 ........................................................ y_1..y_M  EOS

BOS is left out for tokenizers without one (Qwen2); a block is left out when its modality is unused (ASR, VSR).
Only each clip's real tokens enter the row (its pooled length), then the row is padded: on the right for
training, on the left for generation (so that every row ends where decoding starts). Labels are aligned with
the inputs (HF convention); the loss shifts them.

`pack` turns the right-padded training rows into fewer, fuller rows (sequence packing): the rows of coarse
granularities are much shorter than the longest, so most of the padding goes. Positions restart at 0 for
every original row, from which Hugging Face builds a block-diagonal causal mask (docs/design.md, section 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from mome.adapters.context import Segment
from mome.models.llm import AUDIO_CLOSE, AUDIO_OPEN, VIDEO_CLOSE, VIDEO_OPEN

IGNORE_INDEX = -100


@dataclass
class SequenceBatch:
    embeds: torch.Tensor  # [R, L, D]
    attention_mask: torch.Tensor  # [R, L] 1 = real token
    labels: torch.Tensor | None  # [R, L] target ids, IGNORE_INDEX elsewhere
    segments: torch.Tensor  # [R, L] Segment of each position
    position_ids: torch.Tensor | None = None  # [R, L] RoPE positions, restarting per original row (packed only)
    source_rows: torch.Tensor | None = None  # [R, L] original row of each position, -1 on padding (packed only)


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of row indices, longest rows first, each row into the first bin it fits (bins hold <= capacity).

    First-fit decreasing uses at most 11/9 of the optimal number of bins (plus one), and needs no solver.
    """
    if any(n > capacity for n in lengths):
        raise ValueError(f"a row of {max(lengths)} positions does not fit a bin of {capacity}")
    bins: list[list[int]] = []
    free: list[int] = []  # room left in each bin
    for row in sorted(range(len(lengths)), key=lambda r: (-lengths[r], r)):
        slot = next((i for i, room in enumerate(free) if room >= lengths[row]), len(bins))
        if slot == len(bins):
            bins.append([])
            free.append(capacity)
        bins[slot].append(row)
        free[slot] -= lengths[row]
    return bins


def _packed_layout(lengths: list[int], bins: list[list[int]], stride: int, capacity: int) -> torch.Tensor:
    """[3, P, capacity]: for each packed position its flat index into the padded [R, stride] rows (R * stride
    on padding), its original row (-1 on padding) and its position within that row (restarting on padding)."""
    pad_index = len(lengths) * stride
    source, rows, positions = [], [], []
    for members in bins:
        for r in members:
            source.extend(range(r * stride, r * stride + lengths[r]))
            rows.extend([r] * lengths[r])
            positions.extend(range(lengths[r]))
        free = capacity - sum(lengths[r] for r in members)
        source.extend([pad_index] * free)
        rows.extend([-1] * free)
        positions.extend(range(free))
    return torch.tensor([source, rows, positions], dtype=torch.long).view(3, len(bins), capacity)


PACK_CAPACITY = 2.0
"""Packed row length, in units of the longest original row. At 1 a row longer than half the longest one
fills a packed row alone (the demo's a4_v2 rows), leaving ~20% padding; at 2 almost none is left, and the
attention of the longer packed rows costs less than the padding it removes (docs/benchmarks.md)."""

PACKED_ROWS_ATTENTION = ("sdpa", "eager")
"""HF attention implementations that build the block-diagonal mask of packed rows from their position ids
(`masking_utils.find_packed_sequence_indices`), for any number of rows."""


def packing_capacity(attention: str) -> float | None:
    """The `pack` capacity for an attention implementation: PACK_CAPACITY for sdpa and eager; None (one row
    without padding) for flash attention, which reads packing from the position ids of a one-row batch only
    (its variable-length kernel: no mask and no padding computed). Others are refused: they would let packed
    rows attend across their original rows."""
    if attention in PACKED_ROWS_ATTENTION:
        return PACK_CAPACITY
    if "flash" in attention:  # flash_attention_2 / _3 and the kernels hub's flash-attn builds
        return None
    raise ValueError(
        f"packed rows need attention {', '.join(PACKED_ROWS_ATTENTION)} or flash attention, not {attention!r}; "
        "set train.pack_sequences=false"
    )


def pack(seq: SequenceBatch, capacity: float | None = PACK_CAPACITY) -> SequenceBatch:
    """Pack right-padded training rows [R, L] into P <= R rows of `capacity` x L positions (first-fit decreasing);
    `capacity=None`: every row into one row without padding [1, sum of lengths], the layout that flash
    attention's variable-length path reads from the position ids (`packing_capacity`).

    Each packed row holds whole original rows one after the other, then padding. `position_ids` restart at 0
    for every original row and for the padding, so that the RoPE positions are those of the unpacked row and
    HF's mask (`attention_mask=None`) keeps every original row to itself. Padding holds zero embeddings,
    attention mask 0, IGNORE_INDEX labels and Segment.PAD. No label crosses rows: every row starts with
    an unlabelled token (BOS or a marker), so position t never learns the first token of the next row.
    """
    if seq.labels is None or seq.position_ids is not None:
        raise ValueError("pack right-padded training rows (with labels), once")
    num_rows, width = seq.attention_mask.shape
    lengths = seq.attention_mask.sum(1).tolist()  # [R] real tokens, all at the start of each row
    if bool((seq.labels[:, 0] != IGNORE_INDEX).any()):
        raise ValueError("a row starts with a labelled token: packing would let the previous row learn it")
    longest = max(lengths)
    total = sum(lengths)
    room = total if capacity is None else max(longest, min(int(capacity * longest), total))  # <= all in one row
    bins = first_fit_decreasing(lengths, room)
    room = max(sum(lengths[r] for r in members) for members in bins)  # no all-padding tail
    layout = _packed_layout(lengths, bins, width, room).to(seq.embeds.device)
    source, rows, positions = layout.unbind(0)  # each [P, room]

    def gather(values: torch.Tensor, fill: float | int) -> torch.Tensor:  # [R, L, ...] -> [P, room, ...]
        flat = values.reshape(num_rows * width, *values.shape[2:])
        flat = torch.cat([flat, flat.new_full((1, *values.shape[2:]), fill)])  # row R*L: the padding value
        return flat[source]

    return SequenceBatch(
        embeds=gather(seq.embeds, 0.0),  # [P, room, D]
        attention_mask=(rows >= 0).long(),  # [P, room]
        labels=gather(seq.labels, IGNORE_INDEX),  # [P, room]
        segments=gather(seq.segments, int(Segment.PAD)),  # [P, room]
        position_ids=positions,  # [P, room]
        source_rows=rows,  # [P, room]
    )


class SequenceBuilder:
    """Builds LLM inputs from projected A/V tokens, a prompt and (for training) transcripts."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, embeddings: nn.Embedding, prompt: str | dict[str, str]
    ) -> None:
        """`prompt`: one instruction for every row, or one per task (`asr`, `vsr`, `avsr`), chosen by the
        modalities a row has (a unified model's rows)."""
        self.tokenizer = tokenizer
        self.embeddings = embeddings
        ids = tokenizer.convert_tokens_to_ids([AUDIO_OPEN, AUDIO_CLOSE, VIDEO_OPEN, VIDEO_CLOSE])
        self.audio_open, self.audio_close, self.video_open, self.video_close = ids
        self.bos = tokenizer.bos_token_id  # None for Qwen2
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        prompts = prompt if isinstance(prompt, dict) else {task: prompt for task in ("asr", "vsr", "avsr")}
        self.prompt_ids_by_task = {task: self.encode(text) for task, text in prompts.items()}

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text, without any special token the tokenizer's template would add."""
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def encode_targets(self, texts: list[str]) -> list[list[int]]:
        """Transcript ids followed by EOS."""
        return [self.encode(t) + [self.eos] for t in texts]

    def _embed(self, ids: list[int], like: torch.Tensor) -> torch.Tensor:
        weight = self.embeddings.weight
        return self.embeddings(torch.tensor(ids, dtype=torch.long, device=weight.device)).to(like.dtype)

    def _row(
        self, audio: torch.Tensor | None, video: torch.Tensor | None, target: list[int] | None, dtype_like: torch.Tensor
    ) -> tuple[torch.Tensor, list[int], list[int]]:
        """One row: embeddings [L, D], labels (length L) and segments (length L)."""
        pieces: list[torch.Tensor] = []
        labels: list[int] = []
        segments: list[int] = []

        def text(ids: list[int], learn: bool = False) -> None:
            if ids:
                pieces.append(self._embed(ids, dtype_like))
                labels.extend(ids if learn else [IGNORE_INDEX] * len(ids))
                segments.extend([Segment.TEXT] * len(ids))

        def features(x: torch.Tensor, kind: Segment) -> None:
            pieces.append(x.to(dtype_like.dtype))
            labels.extend([IGNORE_INDEX] * x.shape[0])
            segments.extend([kind] * x.shape[0])

        text([self.bos] if self.bos is not None else [])
        if audio is not None:
            text([self.audio_open])
            features(audio, Segment.AUDIO)
            text([self.audio_close])
        if video is not None:
            text([self.video_open])
            features(video, Segment.VIDEO)
            text([self.video_close])
        task = "avsr" if audio is not None and video is not None else "asr" if audio is not None else "vsr"
        text(self.prompt_ids_by_task[task])
        if target is not None:
            text(target, learn=True)
        return torch.cat(pieces), labels, segments

    def build(
        self,
        audio: list[torch.Tensor] | None,
        video: list[torch.Tensor] | None,
        targets: list[list[int]] | None,
        padding_side: str = "right",
    ) -> SequenceBatch:
        """Rows from per-row token lists.

        Args:
            audio: R tensors [Na_r, D] of real (unpadded) projected audio tokens, or None (VSR); a None
                entry leaves that row without an audio block (a unified model's video-only rows).
            video: R tensors [Nv_r, D], or None (ASR); None entries likewise.
            targets: R lists of transcript ids + EOS (training), or None (generation).
            padding_side: "right" for training, "left" for generation.
        """
        num_rows = len(audio if audio is not None else video)  # type: ignore[arg-type]
        audio_rows = audio if audio is not None else [None] * num_rows
        video_rows = video if video is not None else [None] * num_rows
        firsts = [a if a is not None else v for a, v in zip(audio_rows, video_rows)]
        assert all(f is not None for f in firsts), "every row needs at least one modality"
        rows = [
            self._row(audio_rows[r], video_rows[r], targets[r] if targets is not None else None, firsts[r])
            for r in range(num_rows)
        ]
        length = max(e.shape[0] for e, _, _ in rows)
        dim, dtype, device = firsts[0].shape[-1], firsts[0].dtype, firsts[0].device
        embeds = self._embed([self.pad], firsts[0]).expand(len(rows), length, dim).clone()
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long, device=device)
        segments = torch.full((len(rows), length), int(Segment.PAD), dtype=torch.long, device=device)
        for r, (emb, lab, seg) in enumerate(rows):
            n = emb.shape[0]
            span = slice(0, n) if padding_side == "right" else slice(length - n, length)
            embeds[r, span] = emb.to(dtype)
            mask[r, span] = 1
            labels[r, span] = torch.tensor(lab, device=device)
            segments[r, span] = torch.tensor(seg, device=device)
        return SequenceBatch(embeds, mask, labels if targets is not None else None, segments)
