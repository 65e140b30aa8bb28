"""Frozen Whisper encoder run on the real clip length: waveform [B, S] -> features [B, T_a, D] at 50 Hz.

The reference code pads every clip to 30 s and truncates the output, paying for 1500 encoder frames whatever
the clip length. Here each clip is encoded on its own, padded only to its own length (plus one STFT window,
rounded to the 320-sample encoder stride), and the encoder's positional table is sliced to that many frames
for the duration of the call:

    clip [S] 16 kHz --log-mel (torch)--> [1, n_mels, 2 T_a] --conv1, conv2 (stride 2)-->
    [1, T_a, D] + embed_positions[:T_a] --> encoder layers --> [T_a, D], placed in a zero-padded [B, T_max, D]

The log-mel features equal `WhisperFeatureExtractor`'s on every frame of a clip, and so do the conv
outputs. The encoder's self-attention has no padding mask (HF ignores `attention_mask`): encoding clips
one by one keeps a clip's features independent of the rest of its batch (evaluation results do not depend
on the batch size), and they differ slightly from the 30 s-padded ones.
tests/models/test_whisper_encoder.py and benchmarks/whisper_encoder_speed.py quantify both cost and drift.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mome.constants import SAMPLE_RATE, WHISPER_FRAME_RATE
from mome.errors import ClipTooLong, UserError
from mome.models.hf_loading import check_loading_info, checked_arch, quiet_transformers


def log_mel(audio: torch.Tensor, window: torch.Tensor, filters: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Whisper's log-mel spectrogram, batched in torch (WhisperFeatureExtractor's numpy path, without padding).

    Args:
        audio: [B, S] float waveform at 16 kHz; zeros after each clip.
        window: [n_fft] periodic Hann window.
        filters: [n_mels, n_fft // 2 + 1] Slaney mel filter bank (WhisperFeatureExtractor.mel_filters.T).

    Returns:
        [B, n_mels, S // hop_length] features, scaled like Whisper's: (max(log10 mel, max - 8) + 4) / 4.
    """
    stft = torch.stft(audio.float(), window.shape[0], hop_length, window=window.float(), return_complex=True)
    power = stft[..., :-1].abs() ** 2  # [B, F, S // hop]: Whisper drops the last frame
    mel = filters.float() @ power  # [B, n_mels, S // hop]
    log_spec = mel.clamp(min=1e-10).log10()
    # Dynamic range of 8 (80 dB) below each clip's loudest bin; zero padding (-10) never sets the max.
    log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (log_spec + 4.0) / 4.0


def encoder_lengths(samples: torch.Tensor, samples_per_frame: int) -> torch.Tensor:
    """Encoder frames that hold audio of each clip: ceil(samples / 320)."""
    return torch.div(samples + samples_per_frame - 1, samples_per_frame, rounding_mode="floor")


@contextlib.contextmanager
def short_positions(encoder: nn.Module, n_frames: int) -> Iterator[None]:
    """Let HF's WhisperEncoder take 2 * n_frames mel frames by slicing its positional table for one call.

    HF checks the input length against `config.max_source_positions` and adds all `embed_positions` rows,
    so both are swapped for a view on the first `n_frames` rows and restored afterwards, even on error.
    Not thread-safe: do not run the same encoder from two threads at once.
    """
    full_table, full_positions = encoder.embed_positions, encoder.config.max_source_positions
    # [n_frames, D] view: shares storage with the full table, nothing is copied or kept
    short_table = nn.Embedding(n_frames, full_table.embedding_dim, _weight=full_table.weight[:n_frames], _freeze=True)
    encoder.embed_positions, encoder.config.max_source_positions = short_table, n_frames
    try:
        yield
    finally:
        encoder.embed_positions, encoder.config.max_source_positions = full_table, full_positions


def load_whisper_encoder(path_or_arch: str | Path | dict[str, Any]) -> tuple[nn.Module, Any]:
    """(HF WhisperEncoder, WhisperFeatureExtractor) from a local HF dir / `embedded:` name, or an arch dict."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if isinstance(path_or_arch, dict):  # random weights: tests, parameter counts
        config = checked_arch(WhisperConfig, path_or_arch, "model.encoders.audio.arch")
        return WhisperEncoder(config), WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    from mome.convert.embedded import resolve_model_path

    path = resolve_model_path(str(path_or_arch))
    if torch.get_default_device().type == "meta":  # parameter and FLOP counts: the shapes, not the weights
        config = WhisperConfig.from_pretrained(path, local_files_only=True)
        return WhisperEncoder(config), WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    with quiet_transformers():
        model, info = WhisperModel.from_pretrained(
            path, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    check_loading_info(info, str(path))
    encoder = model.encoder
    if (path / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(path, local_files_only=True)
    else:
        extractor = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins)
    return encoder, extractor


class WhisperAudioEncoder(nn.Module):
    """Frozen Whisper encoder (always in eval mode, no gradients) with its log-mel front end."""

    frame_rate = WHISPER_FRAME_RATE

    def __init__(self, path_or_arch: str | Path | dict[str, Any]) -> None:
        super().__init__()
        encoder, extractor = load_whisper_encoder(path_or_arch)
        self.encoder = encoder.eval().requires_grad_(False)
        self.hop_length = extractor.hop_length
        self.samples_per_frame = extractor.hop_length * encoder.conv1.stride[0] * encoder.conv2.stride[0]  # 320
        # Non-persistent: derived from the extractor, so checkpoints carry only the encoder weights.
        filters = torch.as_tensor(extractor.mel_filters, dtype=torch.float32).T.contiguous()  # [n_mels, F]
        self.register_buffer("mel_filters", filters, persistent=False)
        self.register_buffer("window", torch.hann_window(extractor.n_fft), persistent=False)

    @classmethod
    def from_config(cls, cfg: Any) -> WhisperAudioEncoder:
        """From an `AudioEncoderConfig`: `path` (local dir or `embedded:<name>`) wins over `arch`."""
        if cfg.path is None and cfg.arch is None:
            raise UserError("model.encoders.audio: set `path` (a Whisper directory) or `arch`")
        return cls(cfg.path if cfg.path is not None else cfg.arch)

    @property
    def output_dim(self) -> int:
        return self.encoder.config.d_model

    @property
    def max_samples(self) -> int:
        """Longest clip Whisper's positional table covers (30 s)."""
        return self.encoder.config.max_source_positions * self.samples_per_frame

    def train(self, mode: bool = True) -> WhisperAudioEncoder:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / layerdrop even inside a training model
        return self

    def padded_frames(self, longest: int) -> int:
        """Encoder frames for a batch whose longest clip has `longest` samples.

        One STFT window of extra zeros keeps every frame that touches audio identical to the 30 s
        features (no reflection padding reaches it); then round up to the 320-sample stride.
        """
        needed = -(-(longest + self.window.shape[0]) // self.samples_per_frame)
        return min(needed, self.encoder.config.max_source_positions)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a zero-padded batch of 16 kHz waveforms, each clip on its own.

        Whisper's self-attention has no padding mask, so a clip encoded beside a longer one would attend to
        the padding: one clip at a time makes its features independent of the rest of the batch.

        Args:
            audio: [B, S] waveform (per-utterance normalised by the dataset), zeros after each clip.
            lengths: [B] valid samples per clip.

        Returns:
            features [B, T_a, D] at 50 Hz with frames past each clip set to 0, and lengths [B] in frames.
        """
        longest = int(lengths.max())
        if longest > self.max_samples:
            raise ClipTooLong(longest / SAMPLE_RATE, self.max_samples / SAMPLE_RATE)
        out_lengths = encoder_lengths(lengths, self.samples_per_frame).clamp(max=self.padded_frames(longest))
        dtype = self.encoder.conv1.weight.dtype
        features = audio.new_zeros(len(audio), self.padded_frames(longest), self.output_dim, dtype=dtype)
        for i, (samples, frames) in enumerate(zip(lengths.tolist(), out_lengths.tolist())):
            features[i, :frames] = self._encode_clip(audio[i, :samples])[:frames]
        return features, out_lengths

    def _encode_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """[S] waveform -> [padded_frames(S), D] features, the clip padded only by the front end's margin."""
        n_frames = self.padded_frames(len(clip))
        clip = nn.functional.pad(clip, (0, n_frames * self.samples_per_frame - len(clip)))[None]  # [1, n_samples]
        with torch.no_grad():
            mel = log_mel(clip, self.window, self.mel_filters, self.hop_length)  # [1, n_mels, 2 T_a]
            with short_positions(self.encoder, n_frames):
                mel = mel.to(self.encoder.conv1.weight.dtype)
                return self.encoder(input_features=mel).last_hidden_state[0]  # [T_a, D]
