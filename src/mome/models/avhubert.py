"""AV-HuBERT's encoder in plain PyTorch, used video-only and (by default) frozen.

Follows the official AV-HuBERT code (facebookresearch/av_hubert) exactly, with the official attribute names so that a fairseq
state dict loads key for key (avhubert_checkpoint.py):

    video [B,T,1,H,W] ──permute──> [B,1,T,H,W]
      feature_extractor_video: Conv3d(5,7,7)/BN/PReLU/MaxPool ─> per-frame ResNet trunk ─> avg ─> proj  [B,D,T]
      concat [zeros(D) (missing audio), video(D)]  ─> layer_norm(2D) ─> post_extract_proj(2D→D)         [B,T,D]
      encoder: x[pad]=0; x += GELU(SamePad(WN-Conv1d(x))); L pre-LN layers; final layer_norm          [B,T,D]

One feature per video frame, so 25 Hz in, 25 Hz out. The same module, with a narrow ResNet and a few
layers (`ARCHS["compact"]`), is the CPU demo's lip encoder, so the real checkpoint can replace it later.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mome.constants import AVHUBERT_FRAME_RATE
from mome.errors import ConfigError

# Fields that define tensor shapes; everything else in AVHubertArch is a run-time knob.
STRUCTURAL_FIELDS = (
    "embed_dim",
    "layers",
    "heads",
    "ffn_dim",
    "conv_pos",
    "conv_pos_groups",
    "stem_channels",
    "resnet_channels",
    "resnet_blocks",
)


@dataclass
class AVHubertArch:
    """Every size of the encoder; `ARCHS` holds the named ones (Large/Base from conf/pretrain/*_iter5.yaml)."""

    embed_dim: int = 1024
    """D: transformer width (Large 1024, Base 768)."""
    layers: int = 24
    heads: int = 16
    ffn_dim: int = 4096
    conv_pos: int = 128
    """Kernel of the weight-normed positional convolution."""
    conv_pos_groups: int = 16
    stem_channels: int = 64
    """Output channels of the 3D stem (Conv3d 1→C, kernel (5,7,7))."""
    resnet_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    """Channels of the ResNet trunk's stages (stride 1 for the first, 2 after); the last is the proj input."""
    resnet_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    """BasicBlocks per stage (ResNet-18)."""
    dropout: float = 0.1
    """Residual dropout (and the encoder's input dropout); only active when the encoder trains."""
    attention_dropout: float = 0.1
    dropout_input: float = 0.1
    """Dropout after post_extract_proj."""
    layerdrop: float = 0.05
    """Probability of skipping a whole layer, in training only."""
    lora_rank: int = 0
    """Rank of the LoRA on each layer's Q and V projections (Omni-AVSR: 64); 0 disables it."""
    lora_scale: float = 2.0
    """Fixed multiplier of the LoRA delta (Omni-AVSR: 2, not alpha/r)."""
    frozen: bool = True
    """Freeze the weights and keep the module in eval mode even when its parent trains (LoRA still trains)."""

    def __post_init__(self) -> None:
        self.resnet_channels = list(self.resnet_channels)
        self.resnet_blocks = list(self.resnet_blocks)
        where = "model.encoders.video.arch"
        if self.embed_dim % self.heads:
            raise ConfigError(f"{where}.heads: embed_dim={self.embed_dim} is not divisible by heads={self.heads}")
        if self.embed_dim % self.conv_pos_groups:
            raise ConfigError(f"{where}.conv_pos_groups: does not divide embed_dim={self.embed_dim}")
        if not self.resnet_channels or len(self.resnet_channels) != len(self.resnet_blocks):
            raise ConfigError(f"{where}.resnet_blocks: needs one entry per stage of resnet_channels")
        if self.lora_rank < 0:
            raise ConfigError(f"{where}.lora_rank: must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AVHubertArch:
        """Build from a config dict: an optional `name` (large, base, tiny, compact) plus fields that override it."""
        data = dict(data or {})
        name = data.pop("name", "large")
        if name not in ARCHS:
            raise ConfigError(f"model.encoders.video.arch.name: unknown {name!r}; expected one of {', '.join(ARCHS)}")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                expected = ", ".join(["name", *sorted(names)])
                raise ConfigError(f"model.encoders.video.arch.{key}: unknown field; expected one of {expected}")
        return dataclasses.replace(ARCHS[name], **data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ARCHS: dict[str, AVHubertArch] = {
    "large": AVHubertArch(),
    "base": AVHubertArch(embed_dim=768, layers=12, heads=12, ffn_dim=3072),
    # Tests: every part present, a few thousand parameters.
    "tiny": AVHubertArch(
        embed_dim=32,
        layers=2,
        heads=4,
        ffn_dim=64,
        conv_pos=8,
        conv_pos_groups=4,
        stem_channels=4,
        resnet_channels=[4, 8, 8, 16],
        resnet_blocks=[1, 1, 1, 1],
    ),
    # The CPU demo's lip encoder: AV-HuBERT's front end at 1/4 width, one block per stage, 4 layers of 256.
    "compact": AVHubertArch(
        embed_dim=256,
        layers=4,
        heads=4,
        ffn_dim=1024,
        conv_pos=32,
        conv_pos_groups=16,
        stem_channels=16,
        resnet_channels=[16, 32, 64, 128],
        resnet_blocks=[1, 1, 1, 1],
    ),
}


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> [B, T] bool, True on padded frames (fairseq's convention)."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def gelu_fp32(x: torch.Tensor) -> torch.Tensor:
    """fairseq's `gelu`: exact erf-GELU computed in float32 and cast back (matters under bf16)."""
    return F.gelu(x.float()).type_as(x)


# ------------------------------------------------------------------------------------ video front end
class BasicBlock(nn.Module):
    """ResNet BasicBlock with PReLU (resnet_relu_type=prelu); relu1 and relu2 have their own slopes."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.PReLU(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:  # plain downsample_basic_block: 1x1 conv + BN
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + residual)


class ResNetTrunk(nn.Module):
    """2D ResNet applied to every frame on its own; stages are `layer1..layerN` as in the checkpoint."""

    def __init__(self, inplanes: int, channels: list[int], blocks: list[int]) -> None:
        super().__init__()
        for i, (planes, n) in enumerate(zip(channels, blocks)):
            stride = 1 if i == 0 else 2  # only the first block of a stage strides (and maybe downsamples)
            stage = [BasicBlock(inplanes if j == 0 else planes, planes, stride if j == 0 else 1) for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            inplanes = planes
        self.num_stages = len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # [N, C_last]


class ResEncoder(nn.Module):
    """3D stem (each output frame sees ±2 input frames) followed by the per-frame trunk."""

    def __init__(self, arch: AVHubertArch) -> None:
        super().__init__()
        c = arch.stem_channels
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, c, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(c),
            nn.PReLU(c),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.trunk = ResNetTrunk(c, arch.resnet_channels, arch.resnet_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]  # x: [B, 1, T, H, W]
        x = self.frontend3D(x)  # [B, C, T, H/4, W/4]
        x = x.transpose(1, 2).flatten(0, 1)  # [B*T, C, h, w]
        return self.trunk(x).view(b, t, -1)  # [B, T, C_last]


class VideoFrontEnd(nn.Module):
    """`feature_extractor_video`: ResNet then Linear(C_last→D)."""

    def __init__(self, arch: AVHubertArch) -> None:
        super().__init__()
        self.resnet = ResEncoder(arch)
        self.proj = nn.Linear(arch.resnet_channels[-1], arch.embed_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(self.resnet(video)).transpose(1, 2)  # [B, D, T]


# ------------------------------------------------------------------------------------------ transformer
class LoRALinear(nn.Linear):
    """A Linear plus `scale * up(down(x))`, as Omni-AVSR adds to AV-HuBERT's Q and V.

    Subclassing Linear keeps the official `q_proj.weight`/`.bias` keys. Their init is reversed from the
    usual LoRA (down zero, up Kaiming); either way the delta starts at zero, so the encoder is unchanged.
    Not `adapters/lora.py`'s LoRABank: that one must hook an unmodified HF LLM and holds per-granularity banks
    (rank factor); this is one rank-r LoRA in our own module, whose `lora_*` keys checkpoints that train it hold.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float) -> None:
        super().__init__(in_features, out_features)
        self.scale = scale
        self.lora_down = nn.Linear(in_features, rank, bias=False)
        self.lora_up = nn.Linear(rank, out_features, bias=False)
        self.reset_lora()

    def reset_lora(self) -> None:
        nn.init.zeros_(self.lora_down.weight)
        nn.init.kaiming_uniform_(self.lora_up.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.scale * self.lora_up(self.lora_down(x))


class SelfAttention(nn.Module):
    """fairseq MultiheadAttention at afc77bd: separate q/k/v/out projections with bias, key padding mask."""

    def __init__(self, arch: AVHubertArch) -> None:
        super().__init__()
        d = arch.embed_dim
        self.heads = arch.heads
        self.dropout = arch.attention_dropout
        lora = arch.lora_rank > 0
        self.q_proj = LoRALinear(d, d, arch.lora_rank, arch.lora_scale) if lora else nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = LoRALinear(d, d, arch.lora_rank, arch.lora_scale) if lora else nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        keep = None if pad is None else ~pad[:, None, None, :]  # [B, 1, 1, T], True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))  # [B, T, D]


class EncoderLayer(nn.Module):
    """Pre-LN layer (layer_norm_first=true): x += attn(LN(x)); x += fc2(gelu(fc1(LN(x))))."""

    def __init__(self, arch: AVHubertArch) -> None:
        super().__init__()
        self.self_attn = SelfAttention(arch)
        self.self_attn_layer_norm = nn.LayerNorm(arch.embed_dim)
        self.fc1 = nn.Linear(arch.embed_dim, arch.ffn_dim)
        self.fc2 = nn.Linear(arch.ffn_dim, arch.embed_dim)
        self.final_layer_norm = nn.LayerNorm(arch.embed_dim)
        self.dropout = nn.Dropout(arch.dropout)  # dropout1 and dropout3; activation_dropout is 0

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), pad))
        return x + self.dropout(self.fc2(gelu_fp32(self.fc1(self.final_layer_norm(x)))))


class SamePad(nn.Module):
    """Drop the extra output frame that an even kernel with padding k//2 produces (the last one)."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] - self.remove]


def positional_conv(arch: AVHubertArch) -> nn.Sequential:
    """Weight-normed grouped Conv1d (norm over dims 0,1 per tap: g [1,1,K]), SamePad, exact GELU."""
    d, k = arch.embed_dim, arch.conv_pos
    conv = nn.Conv1d(d, d, k, padding=k // 2, groups=arch.conv_pos_groups)
    nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4 * (1 - arch.dropout) / (k * d)))  # wav2vec2 init
    nn.init.zeros_(conv.bias)
    conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    return nn.Sequential(conv, SamePad(k), nn.GELU())


class TransformerEncoder(nn.Module):
    """wav2vec2 TransformerEncoder with layer_norm_first: positional conv, layers, final LayerNorm."""

    def __init__(self, arch: AVHubertArch) -> None:
        super().__init__()
        self.pos_conv = positional_conv(arch)
        self.layers = nn.ModuleList(EncoderLayer(arch) for _ in range(arch.layers))
        self.layer_norm = nn.LayerNorm(arch.embed_dim)
        self.dropout = nn.Dropout(arch.dropout)
        self.layerdrop = arch.layerdrop
        for module in self.layers.modules():  # init_bert_params
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.layers.modules():
            if isinstance(module, LoRALinear):
                module.reset_lora()

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None, output_layer: int | None = None) -> torch.Tensor:
        if pad is not None:
            x = x.masked_fill(pad[..., None], 0.0)  # padded frames must not leak into the conv
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            if not (self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop):
                x = layer(x, pad)
            if output_layer == i + 1:
                return x  # extract_finetune(output_layer=k): residual stream, no final LayerNorm
        return self.layer_norm(x)


# ----------------------------------------------------------------------------------------- the encoder
class AVHubertEncoder(nn.Module):
    """Video-only AV-HuBERT: `[B, T, 1, H, W]` normalised grey frames -> `[B, T, D]` features at 25 Hz."""

    frame_rate = AVHUBERT_FRAME_RATE

    def __init__(self, arch: AVHubertArch | None = None) -> None:
        super().__init__()
        self.arch = arch = dataclasses.replace(arch or AVHubertArch())  # a copy: freeze() edits it
        self.feature_extractor_video = VideoFrontEnd(arch)
        self.layer_norm = nn.LayerNorm(2 * arch.embed_dim)
        self.post_extract_proj = nn.Linear(2 * arch.embed_dim, arch.embed_dim)
        self.dropout_input = nn.Dropout(arch.dropout_input)
        self.encoder = TransformerEncoder(arch)
        if arch.frozen:
            self.freeze()

    @property
    def embed_dim(self) -> int:
        return self.arch.embed_dim

    @property
    def output_dim(self) -> int:
        """Width of the features (the encoders' common interface, models/encoders.py)."""
        return self.arch.embed_dim

    def freeze(self) -> None:
        """Stop gradients to every weight except the LoRA ones, and go to eval mode for good."""
        self.arch.frozen = True
        for name, p in self.named_parameters():
            p.requires_grad_(".lora_" in name)
        self.train(False)

    def train(self, mode: bool = True) -> AVHubertEncoder:
        # A frozen encoder keeps BN statistics, dropout and LayerDrop off whatever its parent does
        # (the Llama-AVSR reference code left the frozen AV-HuBERT in train mode: stochastic features).
        return super().train(mode and not self.arch.frozen)

    def forward(
        self, video: torch.Tensor, lengths: torch.Tensor | None = None, output_layer: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch of clips.

        Args:
            video: [B, T, 1, H, W] (or [B, T, H, W]) grey frames normalised as (x/255 - 0.421)/0.165, 25 fps.
            lengths: [B] valid frames per clip; `None` means all T.
            output_layer: 1-based layer whose residual stream to return (no final LayerNorm); `None`: the last.

        Returns:
            features [B, T, D] (zero on padded frames) and lengths [B] (unchanged: one feature per frame).
        """
        if video.dim() == 4:
            video = video.unsqueeze(2)
        b, t = video.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=video.device)
        pad = padding_mask(lengths, t)  # [B, T]
        video = video.masked_fill(pad[:, :, None, None, None], 0.0)  # zero pad = the conv's own padding
        feats = self.feature_extractor_video(video.permute(0, 2, 1, 3, 4))  # [B, D, T]
        x = self.fuse_missing_audio(feats)  # [B, T, D]
        x = self.encoder(x, pad, output_layer)
        return x.masked_fill(pad[..., None], 0.0), lengths

    def fuse_missing_audio(self, video_feats: torch.Tensor) -> torch.Tensor:
        """modality_fuse=concat with the audio half zero *after* its front end; the LN covers both halves."""
        x = torch.cat([torch.zeros_like(video_feats), video_feats], dim=1).transpose(1, 2)  # [B, T, 2D], audio first
        return self.dropout_input(self.post_extract_proj(self.layer_norm(x)))  # [B, T, D]


class FrameCTCHead(nn.Module):
    """Per-frame classifier on top of the encoder, for CTC training of the compact lip encoder.

    Returns log-probabilities laid out as `F.ctc_loss` wants them ([T, B, V]); index 0 is the blank.
    """

    def __init__(self, embed_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, vocab_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features).float().log_softmax(-1).transpose(0, 1)  # [T, B, V]


def build_avhubert(arch: AVHubertArch | dict[str, Any] | str | None = None) -> AVHubertEncoder:
    """An encoder with random weights from an arch, a config dict (`{name: base, lora_rank: 64}`) or a name."""
    if isinstance(arch, str):
        arch = AVHubertArch.from_dict({"name": arch})
    elif not isinstance(arch, AVHubertArch):
        arch = AVHubertArch.from_dict(arch)
    return AVHubertEncoder(arch)
