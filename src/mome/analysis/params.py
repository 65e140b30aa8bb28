"""Parameter accounting: total, trainable, and active adapter parameters per token (MoME, arXiv 2510.04136, Table 1).

The model is built on the meta device, so Llama 3.2-3B + Whisper-medium + AV-HuBERT Large are counted
without a byte of weights. "Active" follows the paper's table: the adapter parameters one token uses at one
granularity (top-k routed + shared experts + the router for MoME; the shared and/or that granularity's LoRA
for the baselines). Projectors are listed apart, as the paper leaves them out of that column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mome.config import Config
from mome.models.avsr import AVSRModel
from mome.models.encoders import build_audio_encoder, build_video_encoder, encoder_output_dim


def count(module: nn.Module | None, trainable_only: bool = False) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ParameterReport:
    llm: int
    audio_encoder: int
    video_encoder: int
    projectors: int
    adapters: int
    active_adapters: int

    @property
    def total(self) -> int:
        return self.llm + self.audio_encoder + self.video_encoder + self.projectors + self.adapters

    @property
    def trainable(self) -> int:
        return self.projectors + self.adapters

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("LLM (frozen)", self.llm),
            ("audio encoder (frozen)", self.audio_encoder),
            ("video encoder (frozen)", self.video_encoder),
            ("projectors (trainable)", self.projectors),
            ("adapters (trainable)", self.adapters),
            ("total", self.total),
            ("trainable", self.trainable),
            ("active adapter params per token", self.active_adapters),
        ]


def build_on_meta(cfg: Config) -> AVSRModel:
    with torch.device("meta"):
        audio = build_audio_encoder(cfg.model)
        video = build_video_encoder(cfg.model)
        return AVSRModel.from_config(
            cfg.model,
            audio_dim=encoder_output_dim(audio) if audio is not None else None,
            video_dim=encoder_output_dim(video) if video is not None else None,
            audio_encoder=audio,
            video_encoder=video,
            device="meta",
        )


def parameter_report(cfg: Config) -> ParameterReport:
    model = build_on_meta(cfg)
    projectors = count(model.audio_projectors) + count(model.video_projectors)
    return ParameterReport(
        llm=count(model.llm),
        audio_encoder=count(model.audio_encoder),
        video_encoder=count(model.video_encoder),
        projectors=projectors,
        adapters=count(model.adapters),
        active_adapters=model.active_adapter_parameters(),
    )
