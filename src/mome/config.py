"""The single config tree of mome: dataclasses with defaults, loaded from and saved to YAML.

Every experiment is one `Config`. YAML files only serialise it: unknown keys, wrong types and invalid
values fail at load time with a message that names the dotted field (`model.adapter.mome.top_k`).
Presets live in `mome/presets/*.yaml`; a preset may `extends:` another and override a few fields.
Where the paper is silent, the choice is a field here, documented on the field and listed in docs/design.md.

    Config
    ├── model: ModelConfig
    │   ├── encoders: audio (Whisper) / video (AV-HuBERT-style lip encoder)
    │   ├── compression: task, mode, audio_rates, video_rates        (the only place rates are defined)
    │   ├── projector, llm
    │   └── adapter: kind + mome / lora hyper-parameters
    ├── data, train, decode
    └── lip: the lip encoder's own pretraining (`mome pretrain-video`; its steps, optimiser and data: train, data)
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal

import yaml

from mome.constants import MODEL_CROP_SIZE, MOUTH_CROP_SIZE
from mome.errors import ConfigError

# Enumerated fields are `Literal`s: the YAML loader checks a value against them, and each list exists once.
Task = Literal["asr", "vsr", "avsr", "any"]
SingleTask = Literal["asr", "vsr", "avsr"]
CompressionMode = Literal["avg-pool", "stack"]
AdapterKind = Literal["none", "lora", "mtsk-ms", "mtsk-ss", "mtsk-mss", "mome"]
ADAPTER_KINDS: tuple[str, ...] = typing.get_args(AdapterKind)
"""The one list of adapter kinds; `mome.adapters.ADAPTERS` is keyed by it."""
Placement = Literal["mhsa", "ffn", "layer"]
LoadBalance = Literal["per-layer", "pooled"]
AudioEncoderKind = Literal["whisper", "none"]
VideoEncoderKind = Literal["avhubert", "none"]
Precision = Literal["fp32", "bf16", "fp16"]
"""The one dtype vocabulary: frozen weights (`model.llm.dtype`) and autocast (`train.precision`)."""
AutoPrecision = Literal["auto", Precision]
"""An autocast precision, or `auto`: bf16 where the device multiplies bf16 natively, else fp32
(`mome.precision.resolve_precision`)."""
Quantize = Literal["none", "int8"]
"""Decoding with the frozen LLM's linear layers (LM head included) as they are, or dynamically quantised to int8."""
LipObjective = Literal["visemes", "ctc-chars", "both"]
"""What the lip encoder's pretraining learns from: per-frame visemes, CTC on characters, or the sum of both."""
FeatureCacheStore = Literal["full", "pooled"]
"""What a feature cache keeps: the encoders' outputs, or only those pooled at the model's rates."""

# Prompts of the Llama-AVSR / Llama-MTSK reference code; the MoME paper does not give its own.
DEFAULT_PROMPTS = {
    "asr": "Transcribe speech to text.",
    "vsr": "Transcribe video to text.",
    "avsr": "Transcribe speech and video to text.",
}


EMBEDDED_PREFIX = "embedded:"
SNR_RANGE_DB = (-30.0, 60.0)
"""Babble SNRs outside it (and NaN, inf) are mistakes, not conditions: the one rule for training and evaluation."""


def plausible_snr(snr: float | None) -> bool:
    """None (clean) or a finite number of dB within `SNR_RANGE_DB` (NaN compares false: refused)."""
    return snr is None or SNR_RANGE_DB[0] <= snr <= SNR_RANGE_DB[1]


"""Model paths such as `embedded:smollm2-135m` name a model shipped in a PyPI wheel, not a file."""


def absolute_path(path: str | None, base: str | Path | None = None) -> str | None:
    """`path` made absolute once, where it enters the config: `~` expanded, relative paths taken from `base`
    (default: the working directory), `..` folded. `None` and `embedded:` names pass through."""
    if path is None or str(path).startswith(EMBEDDED_PREFIX):
        return path
    resolved = Path(os.path.expanduser(path))  # os.path: `~nosuchuser` stays as written (pathlib raises)
    if not resolved.is_absolute():
        resolved = Path(os.path.expanduser(base if base is not None else Path.cwd())) / resolved
    return os.path.abspath(resolved)


# --------------------------------------------------------------------------------------------- model
@dataclass
class AudioEncoderConfig:
    kind: AudioEncoderKind = "whisper"
    """`whisper` (the encoder of any local Hugging Face Whisper directory) or `none` (VSR)."""
    path: str | None = None
    """Local HF Whisper directory. `None`: built from `arch` (random weights; tests and `mome params`)."""
    arch: dict[str, Any] | None = None
    """`WhisperConfig` fields, so the encoder can be built without weights (transformers' schema, passed on)."""

    def __post_init__(self) -> None:
        self.path = absolute_path(self.path)


@dataclass
class VideoEncoderConfig:
    kind: VideoEncoderKind = "avhubert"
    """`avhubert` (AV-HuBERT or the compact lip encoder that shares its architecture) or `none` (ASR)."""
    path: str | None = None
    """Checkpoint of the video encoder (official fairseq `.pt` or a mome lip-encoder checkpoint)."""
    arch: dict[str, Any] | None = None
    """Architecture of the video encoder: `name` (a named size) plus fields of `AVHubertArch` to change; checked
    against `AVHubertArch` when the encoder is built (`models/avhubert.py`)."""

    def __post_init__(self) -> None:
        self.path = absolute_path(self.path)


@dataclass
class EncodersConfig:
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    video: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)


@dataclass
class CompressionConfig:
    task: Task = "avsr"
    """`asr` (audio only), `vsr` (video only), `avsr` (both, concatenated in the LLM input) or `any`: one
    model for all three, trained on rows of each (`train.task_mix`), that falls back to the modality a clip has."""
    mode: CompressionMode = "avg-pool"
    """`avg-pool` (AvgPool1d, kernel = stride = rate; MoME, MTSK) or `stack` (concatenate `rate` frames)."""
    audio_rates: list[int] = field(default_factory=lambda: [4, 16])
    """Matryoshka audio compression rates (encoder frames per LLM token). MoME AVSR: {4, 16}."""
    video_rates: list[int] = field(default_factory=lambda: [2, 5])
    """Matryoshka video compression rates. MoME AVSR: {2, 5}."""

    @property
    def uses_audio(self) -> bool:
        return "audio" in self.modalities

    @property
    def uses_video(self) -> bool:
        return "video" in self.modalities

    @property
    def modalities(self) -> tuple[str, ...]:
        """The streams a dataset must load for this task: ("audio",), ("video",) or both."""
        return task_modalities(self.task)

    def check(self, path: str) -> None:
        for name, rates, used in (
            ("audio_rates", self.audio_rates, self.uses_audio),
            ("video_rates", self.video_rates, self.uses_video),
        ):
            where = f"{path}.{name}"
            if used:
                _check(len(rates) > 0, where, f"empty rate list; task {self.task!r} needs at least one rate")
            _check(all(r >= 1 for r in rates), where, f"rates must be positive integers, got {rates}")
            _check(len(set(rates)) == len(rates), where, f"duplicate rates in {rates}")


@dataclass
class ProjectorConfig:
    hidden_size: int = 2048
    """Width of Linear -> ReLU -> Linear (reference code default 2048)."""
    per_rate: bool = True
    """One projector per (modality, rate) as in Llama-MTSK; `false` shares one per modality."""
    layer_norm: bool = True
    """LayerNorm on the projector output (the released Omni-AVSR Matryoshka checkpoints have none)."""
    match_embedding_scale: bool = True
    """Start the LayerNorm's gain at the RMS of the LLM's token embeddings, so that A/V tokens enter the LLM
    at the scale of its own tokens (a unit-variance LayerNorm output is several times larger than SmolLM2's
    embeddings, which slowed early training in the CPU demo; docs/experiments.md). `false`: gain 1, as in the
    reference code and the paper presets."""
    ctc_weight: float = 0.0
    """Weight of an auxiliary CTC loss on each projector's output tokens, scored by their cosine with the LLM's
    own embeddings of the transcript tokens (`models/losses.py:projector_ctc`). 0: the paper's objective. Not
    in the paper: the CPU demo uses it so that its short runs learn to read (docs/experiments.md, section 14)."""
    dropout: float = 0.0
    """Dropout on the pooled encoder features entering each projector, in training only. 0: the paper's
    projectors (none); a regulariser for small corpora (docs/experiments.md, section 21). Its masks draw from
    torch's seeded global generator, so the random draws after it differ from a run without it."""

    def check(self, path: str) -> None:
        _at_least(self, path, "hidden_size", 1)
        _check(self.ctc_weight >= 0, f"{path}.ctc_weight", "must be >= 0")
        _check(0 <= self.dropout < 1, f"{path}.dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass
class LLMConfig:
    path: str | None = None
    """Local Hugging Face causal-LM directory (Llama 3.x, Qwen2.5, SmolLM2 ...)."""
    arch: dict[str, Any] | None = None
    """HF config fields (with `model_type`) to build the LLM without weights (`mome params`, tests)."""
    num_layers: int | None = None
    """Keep only the first N decoder layers (the CPU demo); `null` keeps all."""
    hidden_size: int | None = None
    """Expected LLM width; checked against the loaded LLM so a wrong checkpoint fails early."""
    dtype: Precision = "fp32"
    """Dtype of the frozen LLM weights as loaded (`bf16` on GPUs); where the step or decoding computes in bf16
    they are stored in bf16 whatever this says (`AVSRModel.store_frozen`)."""
    allow_random_weights: bool = False
    """Let `mome train` run on an LLM built from `arch` alone (random weights: tests, the `tiny` preset). Off,
    so that a paper preset started without `path` fails instead of training on a random LLM."""

    def __post_init__(self) -> None:
        self.path = absolute_path(self.path)

    def check(self, path: str) -> None:
        _check(
            self.path is not None or self.arch is not None,
            f"{path}.path",
            "missing: give a local Hugging Face model directory (or `arch` to build one without weights)",
        )
        if self.path is not None and not self.path.startswith(EMBEDDED_PREFIX):
            _check(os.path.isdir(self.path), f"{path}.path", f"no such directory: {self.path}")  # False on any OSError
        _at_least(self, path, "num_layers", 1)
        _at_least(self, path, "hidden_size", 1)


@dataclass
class MoMEConfig:
    num_routed_experts: int = 23
    """N_r routed experts per MoME module (MoME-23/4)."""
    top_k: int = 4
    """Routed experts active per token."""
    num_shared_experts: int = 1
    """N_s always-on experts (paper Table 3: 1 is best)."""
    bottleneck: int = 12
    """Expert width b: Linear(d, b) -> GELU -> Linear(b, d)."""
    placement: Placement = "mhsa"
    """Parallel to `mhsa`, `ffn` or the whole `layer`."""
    shared_router: bool = True
    """One router for all granularities (MoME); `false`: one router per rate combination (ablation)."""
    renormalize_gates: bool = True
    """Divide the top-k gates by their sum (Mixtral, the authors' SMoP code) or keep raw softmax values
    (DeepSeekMoE). The paper does not say (docs/design.md)."""
    load_balance_coef: float = 0.01
    """Weight of the Switch-style load-balancing loss (paper: 0.01)."""
    load_balance: LoadBalance = "per-layer"
    """`per-layer`: one loss per layer and granularity, averaged; `pooled`: one loss over every layer's and
    granularity's real tokens together, the authors' form (their code also counts padding; docs/design.md)."""
    z_loss_coef: float = 0.0
    """Weight of the router z-loss (SMoP used 0.001; MoME unknown, so off by default)."""

    def check(self, path: str) -> None:
        for name in ("num_routed_experts", "num_shared_experts", "load_balance_coef", "z_loss_coef"):
            _at_least(self, path, name, 0)
        _check(
            self.num_routed_experts + self.num_shared_experts >= 1,
            f"{path}.num_routed_experts",
            "MoME needs at least one routed or shared expert",
        )
        if self.num_routed_experts > 0:
            _check(
                1 <= self.top_k <= self.num_routed_experts,
                f"{path}.top_k",
                f"top_k={self.top_k} must be between 1 and num_routed_experts={self.num_routed_experts}",
            )
        _at_least(self, path, "bottleneck", 1)


@dataclass
class LoRAConfig:
    rank_factor: int = 32
    """Bottleneck = d_LLM / rank_factor (the reference's "rank" is a reduction factor)."""
    alpha: float = 4.0
    """Scaling = alpha / rank_factor (reference: 4 / 32 = 0.125)."""

    def check(self, path: str) -> None:
        _at_least(self, path, "rank_factor", 1)
        _check(self.alpha > 0, f"{path}.alpha", "must be positive")


@dataclass
class AdapterConfig:
    kind: AdapterKind = "mome"
    """`none`, `lora` (Llama-AVSR), `mtsk-ms` | `mtsk-ss` | `mtsk-mss` (Llama-MTSK) or `mome`."""
    mome: MoMEConfig = field(default_factory=MoMEConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass
class ModelConfig:
    encoders: EncodersConfig = field(default_factory=EncodersConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompt: str | None = None
    """Instruction placed after the A/V blocks; `null` uses the reference prompt of the task."""
    combination_weights: dict[str, float] | None = None
    """c_ij of the Matryoshka loss, keyed like `a4_v2`; `null` is uniform (paper). Missing keys = 1."""
    label_smoothing: float = 0.0
    """Label smoothing of the training cross-entropy (validation losses stay plain CE). 0: the paper's loss;
    a regulariser for small corpora (docs/experiments.md, section 21)."""

    @property
    def prompt_text(self) -> str | dict[str, str]:
        """The instruction: `prompt`, else the task's reference prompt; a unified (`any`) model without
        `prompt` gives each row the prompt of the task its modalities make (the builder picks per row)."""
        if self.prompt is not None:
            return self.prompt
        return dict(DEFAULT_PROMPTS) if self.compression.task == "any" else DEFAULT_PROMPTS[self.compression.task]

    def check(self, path: str) -> None:
        if self.combination_weights is not None:
            valid = {combination_key(c) for c in combinations(self.compression)}
            for key, w in self.combination_weights.items():
                where = f"{path}.combination_weights.{key}"
                _check(key in valid, where, f"not a rate combination; expected {sorted(valid)}")
                _check(w >= 0, where, "weights must be >= 0")
        _check(
            0 <= self.label_smoothing < 1,
            f"{path}.label_smoothing",
            f"must be in [0, 1), got {self.label_smoothing}",
        )


# ---------------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    root: str | None = None
    """Corpus root: holds the label CSVs and the media they point to (auto_avsr / LRS3 layout)."""
    train_labels: str = "labels/train.csv"
    """Label CSV of the training split, relative to `root` unless absolute (likewise `val_labels`, `test_labels`)."""
    val_labels: str = "labels/val.csv"
    test_labels: str = "labels/test.csv"
    noise_path: str | None = "noise/babble.wav"
    """Babble noise (relative to `root` unless absolute); `null` disables noise."""
    train_snrs: list[float | None] = field(default_factory=lambda: [-5, 0, 5, 10, 15, 20, None])
    """SNRs (dB) drawn uniformly per training utterance; `null` = clean (reference code)."""
    clean_epochs: int = 0
    """Training epochs of clean audio only before `train_snrs` apply (a clean-to-babble curriculum); 0: none,
    as in the reference code (a demo-only deviation when set: docs/experiments.md, section 17)."""
    clean_steps_share: float = 0.0
    """The same curriculum as a share of the run's steps, rounded to whole epochs: a run that trains fewer steps
    (a slower machine under the demo's time budget) keeps the same balance of clean and noisy audio. Set this or
    `clean_epochs`, not both."""
    max_frames: int = 1500
    """Frame budget of a training batch, in video frames (reference: 1000-1500 per GPU)."""
    crop_size: int = MODEL_CROP_SIZE
    """Mouth crop fed to the video encoder (random in training, centre at evaluation)."""
    time_mask: bool = True
    """Training time masks (auto_avsr): up to 0.4 s of audio zeroed per second, up to 10 of every 25 video
    frames. A regulariser for many epochs of real data; a short run on a small corpus loses whole words to it."""
    num_workers: int | None = None
    """DataLoader worker processes; `null` (auto): 0 with `feature_cache` (a batch is a few memory-mapped reads,
    and workers would take cores from the step: docs/benchmarks.md), 2 without (media decoding)."""
    num_buckets: int = 10
    """Equal-width length buckets of the frame-budget sampler (batches mix lengths of one bucket only)."""
    av_tolerance_frames: int = 3
    """Largest accepted |audio samples / 640 - video frames|; beyond it an utterance is skipped as broken."""
    eval_noise_seed: int = 0
    """Seed of the evaluation noise; with the SNR and utterance id it fixes the babble exactly."""
    feature_cache: str | None = None
    """Directory of the frozen encoders' cached outputs (`mome features`; relative to the working directory).
    Training and evaluation then read features instead of decoding media and running the encoders, and compute
    what is missing on first use. `null`: no cache (encoders run at every step)."""
    feature_noisy_versions: int = 4
    """K: babble-noisy versions cached per training utterance, each with an SNR drawn from the non-clean
    `train_snrs` and its own babble segment; each epoch draws clean (with the share of `null`s in
    `train_snrs`) or one of the K (docs/design.md)."""
    feature_cache_store: FeatureCacheStore = "full"
    """What the cache keeps of a clip: `full`, the encoders' outputs (a later run may pool them at any rate), or
    `pooled`, only the features pooled at `model.compression`'s rates, what training reads: a fraction of the
    disk (`benchmarks/cache_size.py`); training time masks then scale the pooled tokens (docs/design.md)."""

    @property
    def curriculum(self) -> bool:
        """The first epochs train on clean audio (`clean_epochs` or `clean_steps_share`)."""
        return self.clean_epochs > 0 or self.clean_steps_share > 0

    def clean_epochs_for(self, total_steps: int, steps_per_epoch: int) -> int:
        """Epochs of clean audio in a run of `total_steps`: `clean_epochs`, or `clean_steps_share` of the steps."""
        if self.clean_steps_share == 0:
            return self.clean_epochs
        return round(self.clean_steps_share * total_steps / max(1, steps_per_epoch))

    @property
    def loader_workers(self) -> int:
        """`num_workers`, or its automatic value."""
        if self.num_workers is not None:
            return self.num_workers
        return 0 if self.feature_cache else 2

    def __post_init__(self) -> None:
        """Every path becomes absolute here, once: the root and the cache from the working directory, the
        label and noise files from the root."""
        self.feature_cache = absolute_path(self.feature_cache)
        if self.root is None:
            return
        self.root = absolute_path(self.root)
        for name in ("train_labels", "val_labels", "test_labels", "noise_path"):
            setattr(self, name, absolute_path(getattr(self, name), self.root))

    def check(self, path: str) -> None:
        for i, snr in enumerate(self.train_snrs):
            _check(plausible_snr(snr), f"{path}.train_snrs[{i}]", f"implausible SNR {snr} dB")
        _check(len(self.train_snrs) > 0, f"{path}.train_snrs", "needs at least one value (null = clean)")
        _check(
            1 <= self.crop_size <= MOUTH_CROP_SIZE,
            f"{path}.crop_size",
            f"must be between 1 and the {MOUTH_CROP_SIZE}-pixel mouth crop, got {self.crop_size}",
        )
        for name, low in (
            ("max_frames", 1),
            ("num_workers", 0),
            ("num_buckets", 1),
            ("av_tolerance_frames", 0),
            ("eval_noise_seed", 0),
            ("feature_noisy_versions", 1),
            ("clean_epochs", 0),
        ):
            _at_least(self, path, name, low)
        _check(
            0 <= self.clean_steps_share <= 1,
            f"{path}.clean_steps_share",
            f"must be between 0 and 1, got {self.clean_steps_share}",
        )
        _check(
            not (self.clean_epochs and self.clean_steps_share),
            f"{path}.clean_steps_share",
            "set it or data.clean_epochs, not both",
        )


# ------------------------------------------------------------------------------------ train / decode
@dataclass
class PlateauConfig:
    """Training until the validation WER stops improving (`train.plateau`): off while `every_steps` is null."""

    every_steps: int | None = None
    """Period, in steps, of a decode of the validation split (greedy, at the training precision, with
    `decode.batch_size` and `max_new_tokens`) whose WER (`val/wer` in metrics.csv) is the curve the stop rule
    reads; `null`: off, the run trains to `train.max_steps` (or `epochs`)."""
    min_gain: float = 1.0
    """WER points (absolute) by which the best value of the curve's last `window` must beat the best before
    it; less, and the run stops (`training.plateau.plateau_reached`)."""
    window: float = 0.25
    """The last window as a share of the steps done so far (0.25: the last quarter)."""
    min_steps: int = 0
    """No plateau stop before this step: early in a run the curve can sit flat near 100% before the model
    starts to read."""
    rates: list[str] | None = None
    """The rate combinations decoded (keys such as `a4_v2`); the curve is the mean of their WERs. `null`: every
    combination the model trains."""
    max_utterances: int | None = None
    """Decode the first N validation utterances only; `null`: the whole split."""

    @property
    def enabled(self) -> bool:
        return self.every_steps is not None

    def check(self, path: str) -> None:
        for name, low in (("every_steps", 1), ("min_gain", 0), ("min_steps", 0), ("max_utterances", 1)):
            _at_least(self, path, name, low)
        _check(
            0 < self.window < 1, f"{path}.window", f"must be between 0 and 1 (a share of the steps), got {self.window}"
        )
        if self.rates is not None:
            _check(len(self.rates) > 0, f"{path}.rates", "empty; null decodes every combination")
            _check(len(set(self.rates)) == len(self.rates), f"{path}.rates", f"duplicate rates in {self.rates}")


@dataclass
class TrainConfig:
    seed: int = 7
    lr: float = 1e-3
    """AdamW peak learning rate (paper: 1e-3 ASR/AVSR, 5e-4 VSR)."""
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    projector_lr_scale: float = 1.0
    """Learning rate of the projectors as a multiple of `lr` (the adapters keep `lr`). The paper uses one rate
    for all (1); a demo-only deviation when set (docs/experiments.md, section 13)."""
    warmup_steps: int = 0
    epochs: int = 10
    max_steps: int | None = None
    """Stop after this many optimiser steps (overrides `epochs` when set); the cosine spans it."""
    grad_clip: float = 10.0
    """Largest gradient norm; 0 turns clipping off."""
    precision: AutoPrecision = "auto"
    """Autocast of the training step. `auto`: bf16 where the device has native bf16 matmul (Ampere+ GPUs, CPUs
    with AVX512-BF16 / AMX or Arm BF16), fp32 elsewhere; the choice is printed and saved in precision.json.
    Trainable weights and optimiser state are fp32 whatever this says."""
    output_dir: str = "runs/experiment"
    """Run directory: checkpoints/, metrics.csv, tensorboard/, config.yaml (relative to the working directory)."""
    save_every_steps: int = 200
    """Checkpoint period; a kill -9 loses at most this many steps. Also saved at each epoch end and on Ctrl-C."""
    keep_checkpoints: int = 3
    """Checkpoints kept: the newest this many intact ones (a damaged newer one never pushes them out)."""
    max_nonfinite_steps: int = 5
    """Steps with a non-finite loss or gradient are skipped; this many in a row stop the run (unsaved)."""
    max_bad_fraction: float = 0.01
    """Largest share of the training rows that may be left out (media that fail to load, damaged or failed
    cache entries, malformed label rows); beyond it the run stops, so that it never trains on a silently
    shrunken set. 0: no row may fail; 1: any number (the run still stops on an epoch without a batch)."""
    log_every_steps: int = 10
    """Period of metrics.csv / TensorBoard rows; each row is the mean over the steps since the previous one
    (lr: its latest value). Step 1 is always logged."""
    val_every_steps: int | None = None
    """Validation-loss period in steps; `null`: at the end of every epoch."""
    val_max_batches: int | None = None
    """Cap on validation batches (quick checks); `null`: the whole validation split."""
    num_threads: int | None = None
    """torch CPU threads per process; `null` keeps torch's default."""
    granularity_loop: bool = False
    """`false`: all granularities in one LLM forward (rows = granularities x batch). `true`: one forward and
    backward per granularity, gradients accumulated (the reference's loop): the same gradient, less padding
    and less peak memory, but more, smaller kernels: slower on a GPU and no faster on the CPU demo
    (docs/experiments.md)."""
    task_mix: dict[str, float] | None = None
    """With `model.compression.task=any`: the probability that a training sample's rows are those of `avsr`,
    `asr` or `vsr` (drawn per sample and step, seeded); `null`: a third each."""
    pack_sequences: bool = True
    """`true`: the training and validation forwards pack their rows (the rows of coarse granularities are
    short) into fewer rows of the longest one's length, each original row attending only to itself: the same
    loss and gradient with almost no padding for the frozen LLM to compute. `false`: one right-padded row per
    sample and granularity. Generation is never packed."""
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    """Stop once the validation WER has stopped improving, or at `max_steps` (the cap). The learning-rate
    schedule spans the cap whatever step the run stops at, so a run stopped on a plateau has computed exactly
    the first steps of the same run without the rule."""

    def __post_init__(self) -> None:
        self.output_dir = absolute_path(self.output_dir)

    def check(self, path: str) -> None:
        _check(self.lr > 0, f"{path}.lr", "must be positive")
        _check(self.projector_lr_scale > 0, f"{path}.projector_lr_scale", "must be positive")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"{path}.betas",
            f"needs two values in [0, 1), got {self.betas}",
        )
        for name, low in (
            ("seed", 0),
            ("weight_decay", 0),
            ("warmup_steps", 0),
            ("epochs", 1),
            ("max_steps", 1),
            ("grad_clip", 0),
            ("save_every_steps", 1),
            ("keep_checkpoints", 1),
            ("max_nonfinite_steps", 1),
            ("log_every_steps", 1),
            ("val_every_steps", 1),
            ("val_max_batches", 1),
            ("num_threads", 1),
        ):
            _at_least(self, path, name, low)
        _check(
            0 <= self.max_bad_fraction <= 1,
            f"{path}.max_bad_fraction",
            f"must be in [0, 1], got {self.max_bad_fraction}",
        )


@dataclass
class DecodeConfig:
    num_beams: int = 15
    """Beam search width (reference: 15). Sampling is always off."""
    max_new_tokens: int = 32
    length_penalty: float = 1.0
    """Beam scores are divided by length ** length_penalty (Hugging Face's convention); any finite value."""
    batch_size: int = 8
    """Rows decoded in one generate call: utterances (`mome eval`), clips at one cascade rung or one clip's
    combinations (`mome.inference.api`); results do not depend on it (features are encoded clip by clip)."""
    precision: AutoPrecision = "auto"
    """Autocast of encoding and generation (`mome eval`, `mome transcribe`, the demo's evaluation); `auto` as
    `train.precision`. The resolved value is recorded in results.json. Where it resolves to bf16, the frozen
    LLM's weights are stored in bf16 for decoding (`AVSRModel.prepare_decoding`)."""
    quantize: Quantize = "none"
    """`int8`: the frozen LLM's linear layers (but the MLP's output projections, `quantize.KEPT_FP32`) and LM head
    dynamically quantised to int8 for decoding (CPUs only; it runs in fp32, so `precision` must be `auto` or
    `fp32`): at batch 1 a token streams every weight."""

    def check(self, path: str) -> None:
        for name in ("num_beams", "max_new_tokens", "batch_size"):
            _at_least(self, path, name, 1)
        if self.quantize == "int8":
            _check(
                self.precision in ("auto", "fp32"),
                f"{path}.quantize",
                f"int8 decodes in fp32; decode.precision={self.precision} cannot go with it (use auto or fp32)",
            )


# ------------------------------------------------------------------------------------- lip pretraining
@dataclass
class LipConfig:
    """What `mome pretrain-video` trains (`training.pretrain_video`); the rest of a pretraining run is the tree's:
    steps, optimiser and seed in `train`, corpus, batch budget, workers and masks in `data`. Unused by `mome train`."""

    arch: str = "compact"
    """Named AV-HuBERT arch of the encoder (`models/avhubert.py` ARCHS); `tiny` for tests."""
    objective: LipObjective = "both"
    ctc_weight: float = 1.0
    """Weight of the CTC term when `objective=both`."""
    max_val: int | None = None
    """Validation utterances to score at the end (`null`: the whole val split)."""

    def check(self, path: str) -> None:
        _at_least(self, path, "ctc_weight", 0)
        _at_least(self, path, "max_val", 1)


@dataclass
class Config:
    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    lip: LipConfig = field(default_factory=LipConfig)

    def validate(self) -> Config:
        validate(self)
        return self

    def check(self, path: str) -> None:
        mix = self.train.task_mix
        if mix is not None:
            _check(
                self.model.compression.task == "any",
                "train.task_mix",
                "needs model.compression.task=any (one model for every task)",
            )
            _check(
                set(mix) <= set(typing.get_args(SingleTask)),
                "train.task_mix",
                f"keys must be among avsr, asr, vsr; got {sorted(mix)}",
            )
            _check(
                all(v >= 0 for v in mix.values()) and sum(mix.values()) > 0,
                "train.task_mix",
                f"needs non-negative probabilities with a positive sum; got {mix}",
            )
        rates = self.train.plateau.rates
        if rates is not None:
            known = [combination_key(c) for c in combinations(self.model.compression)]
            for rate in rates:
                _check(
                    rate in known,
                    "train.plateau.rates",
                    f"{rate!r} is not a trained combination (trained: {', '.join(known)})",
                )
        if self.data.feature_cache_store == "pooled":
            _check(
                self.model.compression.mode == "avg-pool",
                "data.feature_cache_store",
                "pooled needs model.compression.mode=avg-pool (stacked frames take the full features' room "
                "at every rate); use full",
            )
        if self.model.compression.task == "any":
            _check(
                not self.train.granularity_loop,
                "train.granularity_loop",
                "is not supported with task any; use the batched forward (false)",
            )

    @property
    def task_mix(self) -> dict[str, float]:
        """The training task probabilities of a unified (`any`) model, normalised."""
        mix = self.train.task_mix or {task: 1.0 for task in typing.get_args(SingleTask)}
        total = sum(mix.values())
        return {task: value / total for task, value in sorted(mix.items()) if value > 0}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------- validation
def _check(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {message}")


def _at_least(section: Any, path: str, name: str, low: float) -> None:
    """`section.name >= low` (a `None` value, where the field allows one, passes)."""
    value = getattr(section, name)
    _check(value is None or value >= low, f"{path}.{name}", f"must be >= {low}, got {value}")


def validate(cfg: Any, path: str = "") -> None:
    """Run every section's own `check(path)` (ranges, cross-field rules), depth first; types and choices
    were already checked while the YAML was read."""
    if hasattr(cfg, "check"):
        cfg.check(path)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{path}.{f.name}" if path else f.name)


# ---------------------------------------------------------------------- rate combinations (one place)
Combination = tuple[int | None, int | None]
"""(audio_rate, video_rate); `None` for a modality the task does not use."""


def combinations(comp: CompressionConfig) -> list[Combination]:
    """All Matryoshka granularities trained together, audio-major: (4,2), (4,5), (16,2), (16,5); a unified
    (`any`) model adds the audio-only (4,-), (16,-) and the video-only (-,2), (-,5) ones."""
    if comp.task == "any":
        both = combinations(dataclasses.replace(comp, task="avsr"))
        return both + [(a, None) for a in comp.audio_rates] + [(None, v) for v in comp.video_rates]
    audio = comp.audio_rates if comp.uses_audio else [None]
    video = comp.video_rates if comp.uses_video else [None]
    return [(a, v) for a in audio for v in video]


def task_modalities(task: str) -> tuple[str, ...]:
    """The streams a task reads: ("audio",) for `asr`, ("video",) for `vsr`, both for `avsr` and `any` (a
    unified model, which can also do with the one a clip has)."""
    return {"asr": ("audio",), "vsr": ("video",)}.get(task, ("audio", "video"))


def combination_task(combo: Combination) -> SingleTask:
    """The task a granularity serves: `avsr` (both rates), `asr` (audio only) or `vsr` (video only)."""
    a, v = combo
    return "avsr" if a and v else "asr" if a else "vsr"


def combination_key(combo: Combination) -> str:
    """Stable name of a combination for logs, weights and state dicts: `a4_v2`, `a4`, `v5`."""
    a, v = combo
    return "_".join(p for p in (f"a{a}" if a else "", f"v{v}" if v else "") if p)


def parse_combination(text: str, comp: CompressionConfig) -> Combination:
    """Parse a user's `16,5` (AVSR), `16` (ASR) or `5` (VSR) into a configured combination; any model also
    takes a key such as `a16_v5`, `a16` or `v5`."""
    known = {combination_key(c): c for c in combinations(comp)}
    if text.strip() in known:
        return known[text.strip()]
    try:
        numbers = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise ConfigError(f"rates {text!r}: expected integers such as '16,5' or a key such as a16_v5") from None
    if comp.task in ("avsr", "any"):
        if len(numbers) != 2:
            raise ConfigError(f"rates {text!r}: AVSR needs 'AUDIO,VIDEO', e.g. '16,5'")
        combo: Combination = (numbers[0], numbers[1])
    elif len(numbers) != 1:
        raise ConfigError(f"rates {text!r}: task {comp.task} needs a single rate")
    else:
        combo = (numbers[0], None) if comp.task == "asr" else (None, numbers[0])
    if combo not in combinations(comp):
        raise ConfigError(f"rates {text!r}: not a trained combination (trained: {', '.join(known)})")
    return combo


# --------------------------------------------------------------------------------- YAML <-> dataclass
PRESET_DIR = Path(__file__).parent / "presets"


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 (built at run time)
    return False, tp


def _coerce(value: Any, tp: Any, path: str) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        _check(optional, path, "may not be null")
        return None
    if dataclasses.is_dataclass(inner):
        _check(isinstance(value, dict), path, f"expected a mapping, got {type(value).__name__}")
        return _from_dict(inner, value, path)
    origin = typing.get_origin(inner)
    if origin is list:
        _check(isinstance(value, (list, tuple)), path, f"expected a list, got {value!r}")
        (item_tp,) = typing.get_args(inner)
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _check(isinstance(value, dict), path, f"expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(inner)
        return {str(k): (v if val_tp is Any else _coerce(v, val_tp, f"{path}.{k}")) for k, v in value.items()}
    if origin is Literal:
        choices = typing.get_args(inner)
        _check(value in choices, path, f"unknown value {value!r}; expected one of {', '.join(map(str, choices))}")
        return value
    if inner is bool:
        _check(isinstance(value, bool), path, f"expected true or false, got {value!r}")
        return value
    if inner is int:
        _check(isinstance(value, int) and not isinstance(value, bool), path, f"expected an integer, got {value!r}")
        return value
    if inner is float:
        if isinstance(value, str):  # YAML 1.1 reads `5e-3` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool), path, f"expected a number, got {value!r}"
        )
        _check(abs(value) <= sys.float_info.max, path, f"must be a finite number, got {value!r}")  # ints too big too
        return float(value)
    if inner is str:
        _check(isinstance(value, str), path, f"expected a string, got {value!r}")
        return value
    if typing.get_origin(inner) in (typing.Union, types.UnionType):  # e.g. float | None inside a list
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where}: unknown field; expected one of {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("arch",):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(source: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(source)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{source}.yaml"
    if not path.is_file():
        known = ", ".join(list_presets())
        raise ConfigError(f"config {source!r}: no such file or preset (presets: {known})")
    try:
        data = _parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping")
    parent = data.pop("extends", None)
    if parent is not None:
        if str(parent) in seen:
            raise ConfigError(f"{path}: circular `extends` through {parent!r}")
        data = _deep_merge(_read_yaml(parent, seen + (str(parent),)), data)
    return data


Override = str | tuple[str, Any]
"""A change to one config field: `"a.b=value"` as a user types it (the value parsed as YAML: `16`, `[4,16]`,
`null`), or `("a.b", value)` from code, set as it is, so that a path with `#` or `: ` in it stays that path."""


def apply_overrides(data: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """Apply overrides (`Override`) in order, the later winning."""
    for item in overrides:
        if isinstance(item, str):
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=5e-4")
            value = _parse_yaml(raw, f"override {item!r}")
        else:
            key, value = item
            value = str(value) if isinstance(value, PurePath) else value
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return data


def _parse_yaml(text: str, where: str) -> Any:
    """YAML -> Python; a syntax error is one line with its position (line:column, from 1)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}{position}: YAML syntax error: {problem}") from None


_LEGACY_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def config_from_dict(data: dict[str, Any], checked: bool = True) -> Config:
    """The config of a dict (types checked); `checked`: its values too (`validate`), which a run that uses only
    some sections (`mome pretrain-video`) cannot pass."""
    llm = data.get("model", {}).get("llm") if isinstance(data.get("model"), dict) else None
    dtype = llm.get("dtype") if isinstance(llm, dict) else None
    if isinstance(dtype, str) and dtype in _LEGACY_DTYPES:  # runs saved before one dtype vocabulary
        llm["dtype"] = _LEGACY_DTYPES[dtype]
    cfg = _from_dict(Config, data)
    return cfg.validate() if checked else cfg


def saved_config(saved: dict[str, Any], overrides: Sequence[Override] | None = None) -> Config:
    """A config saved with a run, with overrides (`Override`). A new `data.root` takes along the label and noise
    files that lay under the old root (they were saved as absolute paths), so a moved corpus just works."""
    data = copy.deepcopy(saved)
    old_root = (data.get("data") or {}).get("root")
    data = apply_overrides(data, list(overrides or []))
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    if old_root and section.get("root") not in (None, old_root):
        for name in ("train_labels", "val_labels", "test_labels", "noise_path"):
            value = section.get(name)
            if isinstance(value, str) and Path(value).is_relative_to(old_root):
                section[name] = str(Path(value).relative_to(old_root))  # resolved against the new root
    return config_from_dict(data)


def load_config(source: str | Path, overrides: Sequence[Override] | None = None) -> Config:
    """Load a preset name or a YAML path, apply overrides (`Override`), type-check and validate."""
    return config_from_dict(apply_overrides(_read_yaml(source), list(overrides or [])))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
