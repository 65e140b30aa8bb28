"""AVSRModel: encoder features -> Matryoshka tokens -> frozen LLM with adapters -> transcripts.

    audio feats [B, T_a, D_a] ─► pool at each audio rate ─► projector(rate) ─┐
    video feats [B, T_v, D_v] ─► pool at each video rate ─► projector(rate) ─┤  one row per (sample, granularity)
                                                                              ▼
                    SequenceBuilder ─► frozen LLM (+ MoME / LoRA hooks) ─► CE per granularity (+ router losses)

Training puts every granularity of every sample into one batched LLM forward (rows = C x B), instead of the
reference's one forward per granularity; `forward(..., combos=[c])` runs a single one, and `tasks` gives each
sample of a unified (`any`) model the rows of its own task (AVSR, audio only or video only). By default the rows
are packed (`sequence.pack`): several short rows share one LLM row, with a block-diagonal causal mask, so that
the frozen LLM hardly computes padding. Generation runs one chosen granularity with beam search
(`generate_scored`), or rows that differ in clip and granularity, left-padded into one call (`generate_rows`). Only
projectors and adapters train; LLM and encoders are frozen and stay in eval mode. Where the step or decoding
computes in bf16, the frozen LLM is stored in bf16 (`store_frozen`); `prepare_decoding` also quantises it to
int8 when `decode.quantize` asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from mome.adapters import attach_adapters
from mome.adapters.context import AdapterContext, adapter_context
from mome.config import (
    Combination,
    DecodeConfig,
    ModelConfig,
    Precision,
    SingleTask,
    combination_key,
    combination_task,
    combinations,
)
from mome.models.llm import LoadedLLM, contiguous_lm_head_input, load_llm, training_attention
from mome.models.losses import per_combination_ce, projector_ctc
from mome.models.pooling import MatryoshkaPooler, pooled_key
from mome.models.projector import ModalityProjectors
from mome.models.sequence import SequenceBatch, SequenceBuilder, pack, packing_capacity
from mome.precision import TORCH_DTYPES, Resolved, decode_precision


@dataclass
class Features:
    """Encoder outputs of a batch; a modality the task does not use may be None."""

    audio: torch.Tensor | None = None  # [B, T_a, D_a]
    audio_lengths: torch.Tensor | None = None  # [B]
    video: torch.Tensor | None = None  # [B, T_v, D_v]
    video_lengths: torch.Tensor | None = None  # [B]
    pooled: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    """Features a pooled cache pooled already: {modality: {rate: ([B, T_r, D], lengths [B])}}."""

    @property
    def batch_size(self) -> int:
        for x in (self.audio, self.video):
            if x is not None:
                return x.shape[0]
        return next(x for rates in self.pooled.values() for x, _ in rates.values()).shape[0]


@dataclass
class AVSROutput:
    loss: torch.Tensor  # the objective that is back-propagated
    lm_loss: torch.Tensor  # weighted CE over granularities
    ce: dict[str, torch.Tensor]  # CE per granularity, keyed `a4_v2`
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # load_balance, z_loss (MoME), ctc
    ce_sums: torch.Tensor | None = None  # [len(combos)] summed token CE, for data-parallel normalisation
    ce_counts: torch.Tensor | None = None  # [len(combos)] labelled tokens
    weights: torch.Tensor | None = None  # [len(combos)] c_ij


def _freeze_encoder(encoder: nn.Module | None) -> nn.Module | None:
    """Frozen and in eval mode, except LoRA weights an encoder may carry (AV-HuBERT LoRA, Omni-AVSR)."""
    if encoder is None:
        return None
    for name, p in encoder.named_parameters():
        p.requires_grad_(".lora_" in name)
    return encoder.eval()


def _has_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


class AVSRModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        llm: LoadedLLM,
        audio_dim: int | None,
        video_dim: int | None,
        audio_encoder: nn.Module | None = None,
        video_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        comp = cfg.compression
        self.combinations: list[Combination] = combinations(comp)
        self.llm = llm.model
        self.lm_head_hook = contiguous_lm_head_input(self.llm)  # beam search within memory (`mome.models.llm`)
        self.tokenizer = llm.tokenizer
        self.audio_encoder = _freeze_encoder(audio_encoder)
        self.video_encoder = _freeze_encoder(video_encoder)
        width = self.llm.config.hidden_size
        embeddings = self.llm.get_input_embeddings().weight
        embedding_rms = None if embeddings.is_meta else embeddings.detach().float().pow(2).mean().sqrt().item()
        self.audio_pooler = self.audio_projectors = self.video_pooler = self.video_projectors = None
        if comp.uses_audio:
            assert audio_dim is not None, "audio task without an audio feature width"
            self.audio_pooler = MatryoshkaPooler(comp.audio_rates, comp.mode)
            dims = {r: self.audio_pooler.output_dim(audio_dim, r) for r in comp.audio_rates}
            self.audio_projectors = ModalityProjectors(dims, width, cfg.projector, embedding_rms)
        if comp.uses_video:
            assert video_dim is not None, "video task without a video feature width"
            self.video_pooler = MatryoshkaPooler(comp.video_rates, comp.mode)
            dims = {r: self.video_pooler.output_dim(video_dim, r) for r in comp.video_rates}
            self.video_projectors = ModalityProjectors(dims, width, cfg.projector, embedding_rms)
        self.adapter_handle = attach_adapters(self.llm, cfg.adapter, len(self.combinations))
        self.adapters = self.adapter_handle.modules  # registered here, so the LLM's own state dict is unchanged
        declared = {id(p) for p in self.adapter_handle.trainable_parameters()}
        for p in self.adapters.parameters():  # the adapter kind says what trains
            p.requires_grad_(id(p) in declared)
        self.builder = SequenceBuilder(self.tokenizer, self.llm.get_input_embeddings(), cfg.prompt_text)
        weights = cfg.combination_weights or {}
        self.register_buffer(
            "combination_weights",
            torch.tensor([weights.get(combination_key(c), 1.0) for c in self.combinations]),
            persistent=False,
        )
        self.decode_layout: tuple[Precision, str] | None = None
        """(precision, quantize) that `prepare_decoding` laid the frozen LLM out for; None: as built."""

    @classmethod
    def from_config(
        cls,
        cfg: ModelConfig,
        audio_dim: int | None = None,
        video_dim: int | None = None,
        audio_encoder: nn.Module | None = None,
        video_encoder: nn.Module | None = None,
        device: str | torch.device | None = None,
    ) -> AVSRModel:
        """Load the LLM named by `cfg.llm` and assemble the model (encoder widths from the encoders if given)."""
        audio_dim = getattr(audio_encoder, "output_dim", audio_dim)
        video_dim = getattr(video_encoder, "output_dim", video_dim)
        return cls(cfg, load_llm(cfg.llm, device=device), audio_dim, video_dim, audio_encoder, video_encoder)

    # ------------------------------------------------------------------------------------ trainability
    def train(self, mode: bool = True) -> AVSRModel:
        super().train(mode)
        for frozen in (self.llm, self.audio_encoder, self.video_encoder):
            if frozen is not None:
                frozen.eval()  # no dropout / layerdrop in frozen parts, ever (unlike the reference code)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Projectors, adapters (and LoRA inside AV-HuBERT when configured); everything else is frozen."""
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: the trainable parameters, nothing frozen."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by `trainable_state_dict`; every key must match in name and shape."""
        own = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(
                f"trainable weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        with torch.no_grad():
            for name, p in own.items():
                if p.shape != state[name].shape:
                    raise KeyError(f"{name}: checkpoint shape {tuple(state[name].shape)} != model {tuple(p.shape)}")
                p.copy_(state[name])

    def store_frozen(self, precision: Precision) -> None:
        """Store the frozen LLM's weights in the dtype the step or decoding computes in: bf16 for bf16, so that
        autocast has nothing to re-cast at each call; fp32 for fp32, where an LLM loaded in bf16
        (`model.llm.dtype`, the paper presets) would otherwise meet fp32 activations. fp16 (autocast on a GPU)
        leaves them as loaded. Trainable weights (so optimiser state and checkpoints) stay fp32; buffers (rotary
        frequencies) keep their dtype, as when HF loads a model in bf16; tied weights stay tied."""
        if precision == "fp16":
            return
        dtype = TORCH_DTYPES[precision]
        with torch.no_grad():
            for p in self.llm.parameters():
                assert not p.requires_grad, "the LLM is frozen"
                if p.dtype != dtype:
                    p.data = p.data.to(dtype)

    def prepare_training(self, precision: Precision, device: str | torch.device) -> None:
        """Lay the frozen LLM out for training steps computed in `precision` on `device`: bf16 weights where
        the step is bf16 (`store_frozen`), and the attention `llm.training_attention` picks: eager for bf16
        steps on a CPU, whose fused SDPA backward in bf16 is several times slower (docs/benchmarks.md,
        train_speed), flash attention for half-precision steps on a GPU where flash-attn is installed."""
        self.store_frozen(precision)
        attention = training_attention(precision, torch.device(device).type)
        if attention is not None and self.attention != attention:
            self.llm.set_attn_implementation(attention)

    @property
    def attention(self) -> str:
        """The frozen LLM's attention implementation (`sdpa`, `eager`, `flash_attention_2`, ...)."""
        return str(self.llm.config._attn_implementation)

    def prepare_decoding(self, decode: DecodeConfig, device: str | torch.device) -> Resolved:
        """What decoding runs in (`mome.precision.decode_precision`), with the frozen LLM laid out for it: bf16
        weights where it computes in bf16, int8 linear layers under `decode.quantize: int8`
        (`mome.models.quantize`). Once per model: a model laid out for one decoding refuses another."""
        from mome.models.quantize import quantize_int8

        resolved = decode_precision(decode, device)
        layout = (resolved.precision, decode.quantize)
        if self.decode_layout not in (None, layout):
            raise ValueError(
                f"this model's LLM is laid out for decoding in {self.decode_layout}, not {layout}: "
                "build the model again"
            )
        if self.decode_layout is None:
            self.store_frozen(resolved.precision)  # fp32 too: an LLM loaded in bf16 is widened
            if layout != ("fp32", "none"):  # fp32 weights as built: any layout may still follow
                if decode.quantize == "int8":
                    quantize_int8(self.llm)
                self.decode_layout = layout
        return resolved

    def active_adapter_parameters(self) -> int:
        """Adapter parameters one token uses at one granularity (the paper's "active params")."""
        return self.adapter_handle.active_parameters()

    # ------------------------------------------------------------------------------------ encoders
    def encode(self, batch: dict) -> Features:
        """Run the frozen encoders on a collated batch (`audio`, `audio_lengths`, `video`, `video_lengths`), or
        pass on the features a cached batch carries (`audio_features`, ...: `mome.features`)."""
        features = Features()
        unified = self.cfg.compression.task == "any"  # encodes what the clip has (`mome.inference.clip`)
        pooled = self._pooled_inputs(batch)
        if "audio_features" in batch or "video_features" in batch or pooled:
            for modality, pooler in (("audio", self.audio_pooler), ("video", self.video_pooler)):
                cached = f"{modality}_features" in batch or modality in pooled
                if pooler is not None and not cached and not unified:
                    raise ValueError(f"this model needs {modality}: the cached batch has no {modality} features")
            return Features(
                batch.get("audio_features"),
                batch.get("audio_features_lengths"),
                batch.get("video_features"),
                batch.get("video_features_lengths"),
                pooled,
            )
        if self.audio_pooler is not None and not (unified and "audio" not in batch):
            if self.audio_encoder is None or "audio" not in batch:
                raise ValueError("this model needs audio: the batch has none or the model has no audio encoder")
            with torch.set_grad_enabled(_has_trainable(self.audio_encoder) and torch.is_grad_enabled()):
                features.audio, features.audio_lengths = self.audio_encoder(batch["audio"], batch["audio_lengths"])
        if self.video_pooler is not None and not (unified and "video" not in batch):
            if self.video_encoder is None or "video" not in batch:
                raise ValueError("this model needs video: the batch has none or the model has no video encoder")
            with torch.set_grad_enabled(_has_trainable(self.video_encoder) and torch.is_grad_enabled()):
                features.video, features.video_lengths = self.video_encoder(batch["video"], batch["video_lengths"])
        return features

    def _pooled_inputs(self, batch: dict) -> dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """The features a batch carries pooled already (`pooling.pooled_key`), at this model's rates."""
        found: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        for modality in ("audio", "video"):
            pooler = getattr(self, f"{modality}_pooler")
            for rate in pooler.rates if pooler is not None else []:
                key = pooled_key(modality, rate)
                if key in batch:
                    found.setdefault(modality, {})[rate] = (batch[key], batch[f"{key}_lengths"])
        return found

    # ------------------------------------------------------------------------------------ sequences
    def _project(self, features: Features, combos: list[Combination]) -> tuple[dict, dict]:
        """Pool and project each modality once per rate that `combos` need: {rate: (tokens [B,T',D], lengths)}."""
        tokens: dict[str, dict] = {"audio": {}, "video": {}}
        for modality, rates in (("audio", {a for a, _ in combos if a}), ("video", {v for _, v in combos if v})):
            pooler, x = getattr(self, f"{modality}_pooler"), getattr(features, modality)
            if not rates:
                continue
            projectors = getattr(self, f"{modality}_projectors")
            if modality in features.pooled:  # pooled in the feature cache
                have = features.pooled[modality]
                if not rates <= set(have):
                    raise ValueError(
                        f"rates {sorted(rates - set(have))} of {modality}: the batch's features are "
                        f"pooled at {sorted(have)} only"
                    )
                for rate in sorted(rates):
                    tokens[modality][rate] = (projectors(rate, have[rate][0]), have[rate][1])
                continue
            if pooler is None or x is None:
                raise ValueError(f"rates {sorted(rates)} need {modality}: this batch or model has none")
            for rate, p in pooler(x, getattr(features, f"{modality}_lengths"), sorted(rates)).items():
                tokens[modality][rate] = (projectors(rate, p.features), p.lengths)
        return tokens["audio"], tokens["video"]

    def build_sequences(
        self,
        features: Features,
        combos: list[Combination],
        texts: list[str] | None,
        padding_side: str,
        tasks: list[SingleTask] | None = None,
    ) -> SequenceBatch:
        """Rows ordered granularity-major: sample b at granularity combos[c] (`rows`)."""
        audio, video = self._project(features, combos)
        return self._sequences(audio, video, features.batch_size, combos, texts, padding_side, tasks)

    def _sequences(
        self,
        audio: dict,
        video: dict,
        batch_size: int,
        combos: list[Combination],
        texts: list[str] | None,
        padding_side: str,
        tasks: list[SingleTask] | None = None,
    ) -> SequenceBatch:
        """`build_sequences` from projected tokens ({rate: (tokens [B,T',D], lengths)} per modality)."""
        rows = self.rows(combos, batch_size, tasks)
        rows_a = (
            [audio[combos[c][0]][0][b, : int(audio[combos[c][0]][1][b])] if combos[c][0] else None for c, b in rows]
            if audio
            else None
        )
        rows_v = (
            [video[combos[c][1]][0][b, : int(video[combos[c][1]][1][b])] if combos[c][1] else None for c, b in rows]
            if video
            else None
        )
        targets = None
        if texts is not None:
            ids = self.builder.encode_targets(texts)
            targets = [ids[b] for _, b in rows]
        return self.builder.build(rows_a, rows_v, targets, padding_side)

    def row_sequences(self, rows: Sequence[tuple[Features, Combination]], padding_side: str) -> SequenceBatch:
        """One row per (clip's features, combination), each clip pooled and projected once at the combinations its
        rows ask for: what `build_sequences` gives each clip on its own, with rows of other clips beside it."""
        wanted: dict[int, list[Combination]] = {}
        for features, combo in rows:
            if features.batch_size != 1:
                raise ValueError(f"row_sequences takes the features of one clip per row, not {features.batch_size}")
            wanted.setdefault(id(features), []).append(combo)
        projected = {id(f): self._project(f, wanted[id(f)]) for f, _ in rows}  # {clip: ({rate: ...}, {rate: ...})}
        audio = [_clip_tokens(projected[id(f)][0], combo[0]) for f, combo in rows]
        video = [_clip_tokens(projected[id(f)][1], combo[1]) for f, combo in rows]
        return self.builder.build(
            *(None if all(t is None for t in ts) else ts for ts in (audio, video)), None, padding_side
        )

    @staticmethod
    def rows(
        combos: list[Combination], batch_size: int, tasks: list[SingleTask] | None = None
    ) -> list[tuple[int, int]]:
        """(granularity index into `combos`, sample) of each row, granularity-major; with `tasks`, sample b
        has only the granularities of tasks[b] (a unified model's training rows)."""
        return [
            (c, b)
            for c, combo in enumerate(combos)
            for b in range(batch_size)
            if tasks is None or combination_task(combo) == tasks[b]
        ]

    # ------------------------------------------------------------------------------------ training
    def forward(
        self,
        features: Features,
        texts: list[str],
        combos: list[Combination] | None = None,
        packed: bool = True,
        tasks: list[SingleTask] | None = None,
    ) -> AVSROutput:
        """Matryoshka loss over `combos` (default: all configured granularities) in one LLM forward; the
        granularities no row has (`tasks`) are left out of the mean.

        `packed`: pack the rows (sequence.pack), else one right-padded row per (sample, granularity). Both
        give the same losses and gradients; the padded layout stays for equality tests and benchmarks.
        """
        combos = list(combos or self.combinations)
        index = torch.tensor([self.combinations.index(c) for c in combos])
        audio, video = self._project(features, combos)
        seq = self._sequences(audio, video, features.batch_size, combos, texts, "right", tasks)
        rows = self.rows(combos, features.batch_size, tasks)
        combination = index[[c for c, _ in rows]].to(seq.embeds.device)  # [R], R = C x B without the rows left out
        if packed:  # rows of up to twice the longest (sdpa, eager), or one row (flash attention)
            seq = pack(seq, packing_capacity(self.attention))
            combination = combination[seq.source_rows.clamp_min(0)]  # [P, L]; padding's is never used
        ctx = AdapterContext(combination, seq.attention_mask.bool(), seq.segments, collect=True)
        with adapter_context(ctx):
            hidden = self.last_hidden(seq)  # [R or P, L, D]
        smoothing = self.cfg.label_smoothing if self.training else 0.0  # validation losses stay plain CE
        sums, counts = per_combination_ce(
            hidden, seq.labels, self.llm.get_output_embeddings(), combination, len(self.combinations), smoothing
        )
        index = index.to(sums.device)
        sums, counts = sums[index], counts[index]  # [len(combos)]
        ce = sums / counts.clamp_min(1)
        weights = self.combination_weights.to(ce.device)[index]
        lm_loss = (weights * ce).sum() / (counts > 0).sum().clamp_min(1)  # every granularity with rows
        loss, aux = lm_loss, {}
        for name, term in self.adapter_handle.aux_losses(ctx.records).items():  # MoME's router losses
            aux[name] = term.value
            loss = loss + term.weight * term.value
        if self.cfg.projector.ctc_weight > 0:
            aux["ctc"] = self._ctc(audio, video, combos, texts)
            loss = loss + self.cfg.projector.ctc_weight * aux["ctc"]
        ce_by_key = {combination_key(c): ce[i] for i, c in enumerate(combos)}
        return AVSROutput(loss, lm_loss, ce_by_key, aux, sums, counts, weights)

    def _ctc(self, audio: dict, video: dict, combos: list[Combination], texts: list[str]) -> torch.Tensor:
        """`projector.ctc_weight`'s term: the mean over `combos` of the mean CTC of the rates each uses, each
        rate's CTC computed once over every sample; so a loop over granularities sums to the batched term."""
        targets = [self.builder.encode(t) for t in texts]
        embeddings = self.llm.get_input_embeddings().weight
        per_rate: dict[tuple[str, int], torch.Tensor] = {}
        for modality, projected in (("audio", audio), ("video", video)):
            blank = getattr(self, f"{modality}_projectors").ctc_blank if projected else None
            for rate, (tokens, lengths) in projected.items():
                per_rate[modality, rate] = projector_ctc(tokens, lengths, targets, embeddings, blank)
        terms = [torch.stack([per_rate[m, r] for m, r in (("audio", a), ("video", v)) if r]).mean() for a, v in combos]
        return torch.stack(terms).mean()

    def last_hidden(self, seq: SequenceBatch) -> torch.Tensor:
        """The frozen base model's last hidden states [R, L, D] (the loss runs the LM head where labels are).

        Packed rows go in with `attention_mask=None` and their restarting position ids: HF then detects the
        packing and masks attention block-diagonally (sdpa, eager) or runs flash attention's variable-length
        kernel over the one packed row, so that no token sees another original row.
        """
        base = getattr(self.llm, self.llm.base_model_prefix)
        if seq.position_ids is None:  # right-padded rows
            return base(inputs_embeds=seq.embeds, attention_mask=seq.attention_mask, use_cache=False).last_hidden_state
        if packing_capacity(self.attention) is None and seq.embeds.shape[0] > 1:
            raise ValueError("flash attention reads packed rows from a one-row batch only: pack(capacity=None)")
        return base(
            inputs_embeds=seq.embeds, position_ids=seq.position_ids, attention_mask=None, use_cache=False
        ).last_hidden_state

    # ------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, features: Features, combo: Combination, decode: DecodeConfig) -> list[str]:
        """Beam-search transcripts at one granularity (`generate_scored` without the confidences)."""
        return self.generate_scored(features, combo, decode)[0]

    @torch.no_grad()
    def generate_scored(
        self, features: Features, combo: Combination, decode: DecodeConfig
    ) -> tuple[list[str], list[float]]:
        """Transcripts at one granularity and each one's confidence: the mean log-probability of its tokens,
        EOS included (what a cascade compares). Greedy decoding records it as it goes; beam search scores the
        chosen beams in one teacher-forced forward, since HF's beam scores would keep every step's
        [beams, vocab] scores in memory.

        Sampling is off and every setting is explicit, so the checkpoint's own generation_config (sampling at
        temperature 0.6 for Llama 3) never applies."""
        seq = self.build_sequences(features, [combo], None, padding_side="left")
        return self._generate_scored(seq, self.combinations.index(combo), decode)

    @torch.no_grad()
    def generate_rows(
        self, rows: Sequence[tuple[Features, Combination]], decode: DecodeConfig
    ) -> tuple[list[str], list[float]]:
        """`generate_scored` of several (clip's features, combination) rows in one left-padded call: the weights
        each generated token reads are shared by every row. Each row's result is that of its clip decoded alone
        at its combination, up to float rounding (padding changes the shapes of the sums)."""
        seq = self.row_sequences(rows, padding_side="left")
        index = [self.combinations.index(combo) for _, combo in rows]
        return self._generate_scored(seq, index[0] if len(set(index)) == 1 else torch.tensor(index), decode)

    def _generate_scored(
        self, seq: SequenceBatch, combination: int | torch.Tensor, decode: DecodeConfig
    ) -> tuple[list[str], list[float]]:
        """Transcripts and confidences of left-padded rows, at one combination index or one per row."""
        gen = GenerationConfig(
            num_beams=decode.num_beams,
            max_new_tokens=decode.max_new_tokens,
            length_penalty=decode.length_penalty,
            do_sample=False,
            num_return_sequences=1,
            eos_token_id=self.builder.eos,
            pad_token_id=self.builder.pad,
            bos_token_id=self.builder.bos,
        )
        ctx = AdapterContext(combination, collect=False)
        chosen = _ChosenLogProb()
        # HF fills every unset field from the model's generation_config (repetition penalties, suppressed
        # tokens ...): swap in a blank one for this call so that nothing is inherited.
        model_defaults, self.llm.generation_config = self.llm.generation_config, GenerationConfig()
        try:
            with adapter_context(ctx):
                out = self.llm.generate(
                    inputs_embeds=seq.embeds,
                    attention_mask=seq.attention_mask,
                    generation_config=gen,
                    logits_processor=LogitsProcessorList([chosen] if decode.num_beams == 1 else []),
                )
                if decode.num_beams == 1:
                    logprobs = torch.stack(chosen.steps, 1)  # [B, S]
                else:
                    logprobs = self._teacher_forced(seq, out)
        finally:
            self.llm.generation_config = model_defaults
        keep = self._up_to_eos(out[:, -logprobs.shape[1] :])
        confidence = (logprobs.float() * keep).sum(1) / keep.sum(1).clamp_min(1)
        texts = [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        return texts, confidence.tolist()

    def _up_to_eos(self, generated: torch.Tensor) -> torch.Tensor:
        """[B, S] 1 for each generated token up to and including the first EOS, else 0."""
        ended = (generated == self.builder.eos).long().cumsum(1)
        return ((ended == 0) | ((ended == 1) & (generated == self.builder.eos))).float()

    def _teacher_forced(self, seq: SequenceBatch, generated: torch.Tensor) -> torch.Tensor:
        """[B, S] log-probability of each generated token given the prompt and the tokens before it."""
        steps = generated.shape[1]
        embeds = torch.cat([seq.embeds, self.llm.get_input_embeddings()(generated).to(seq.embeds.dtype)], 1)
        mask = torch.cat([seq.attention_mask, torch.ones_like(generated)], 1)
        positions = (mask.cumsum(1) - 1).clamp_min(0)  # as generation numbers left-padded rows
        logits = self.llm(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=steps + 1
        ).logits[:, :-1]
        return torch.log_softmax(logits.float(), -1).gather(-1, generated.unsqueeze(-1)).squeeze(-1)


def _clip_tokens(by_rate: dict, rate: int | None) -> torch.Tensor | None:
    """The real (unpadded) projected tokens of a one-clip batch at `rate` (`AVSRModel._project`), or None."""
    if not rate:
        return None
    tokens, lengths = by_rate[rate]
    return tokens[0, : int(lengths[0])]


class _ChosenLogProb(LogitsProcessor):
    """Records, at each greedy step, the log-probability of the token greedy decoding picks (the highest)."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(torch.log_softmax(scores.float(), -1).max(-1).values)  # [B]
        return scores


def build_model(cfg: ModelConfig, device: str | torch.device | None = None, trusted: bool = False) -> AVSRModel:
    """Encoders (from their paths, or architectures), the LLM, projectors and adapters, as `cfg` says.

    `trusted` allows executing the pickle of an official AV-HuBERT checkpoint (see avhubert_checkpoint.py).
    """
    from mome.models.encoders import build_audio_encoder, build_video_encoder, encoder_output_dim

    audio = build_audio_encoder(cfg)
    video = build_video_encoder(cfg, trusted=trusted)
    model = AVSRModel.from_config(
        cfg,
        audio_dim=encoder_output_dim(audio) if audio is not None else None,
        video_dim=encoder_output_dim(video) if video is not None else None,
        audio_encoder=audio,
        video_encoder=video,
    )
    return model.to(device) if device is not None else model
