"""WhisperAudioEncoder: batched torch log-mel, short-clip encoding, lengths, frozen/eval, and (integration)
how far short-clip features drift from the reference's 30 s-padded ones on real Whisper tiny.en weights."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mome.errors import UserError
from mome.models.whisper_encoder import WhisperAudioEncoder, log_mel
from tiny import TINY_WHISPER

TINY_ARCH = TINY_WHISPER


@pytest.fixture
def encoder() -> WhisperAudioEncoder:
    torch.manual_seed(0)
    return WhisperAudioEncoder(TINY_ARCH)


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, S] normalised noise with zeros after each clip, and [B] lengths."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        audio[i, :n] = torch.randn(n, generator=g) * torch.linspace(0.2, 1.0, n)
    return audio, torch.tensor(lengths)


def _hf_30s(encoder: WhisperAudioEncoder, clip: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference path: WhisperFeatureExtractor pads to 30 s; the full HF encoder runs on 1500 frames."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=encoder.encoder.config.num_mel_bins)
    mel = extractor(clip, sampling_rate=16_000, return_tensors="pt").input_features  # [1, 80, 3000]
    with torch.no_grad():
        return mel, encoder.encoder(input_features=mel).last_hidden_state  # [1, 1500, D]


def test_log_mel_equals_feature_extractor_on_valid_frames(encoder):
    audio, lengths = _batch([20_800, 11_111])
    n_samples = encoder.padded_frames(int(lengths.max())) * encoder.samples_per_frame
    mel = log_mel(
        nn.functional.pad(audio, (0, n_samples - audio.shape[1])),
        encoder.window,
        encoder.mel_filters,
        encoder.hop_length,
    )  # [B, 80, 2 T_a]
    for i, n in enumerate(lengths.tolist()):
        ref, _ = _hf_30s(encoder, audio[i, :n].numpy())
        valid = -(-n // encoder.hop_length)
        torch.testing.assert_close(mel[i, :, :valid], ref[0, :, :valid], atol=1e-5, rtol=0)


def test_features_do_not_depend_on_the_rest_of_the_batch(encoder):
    """A short clip beside a long one gets exactly the features it gets alone (no attention to padding)."""
    audio, lengths = _batch([6_000, 40_000])
    alone, alone_lengths = encoder(audio[:1, :6_000], lengths[:1])
    together, together_lengths = encoder(audio, lengths)
    n = int(alone_lengths[0])
    assert n == int(together_lengths[0]) and together.shape[1] > n
    torch.testing.assert_close(together[0, :n], alone[0, :n], atol=0, rtol=0)
    assert together[0, n:].abs().sum() == 0


def test_shapes_lengths_and_padding_mask(encoder):
    audio, lengths = _batch([32_000, 16_000, 5_000])
    features, out_lengths = encoder(audio, lengths)
    t_a = encoder.padded_frames(32_000)
    assert t_a == 102  # (32000 + 400) / 320 rounded up: 2 s + one STFT window, not 1500 frames
    assert features.shape == (3, t_a, encoder.output_dim)
    assert out_lengths.tolist() == [100, 50, 16]  # ceil(samples / 320)
    assert encoder.frame_rate == 50 and encoder.output_dim == 32
    for i, n in enumerate(out_lengths.tolist()):
        assert features[i, n:].abs().max() == 0 and features[i, :n].abs().amin(dim=-1).gt(0).all()


def test_front_end_equals_30s_padding_on_valid_frames(encoder):
    """Everything before self-attention (log-mel, convs, positions) matches the 30 s path exactly."""
    captured = []
    hook = encoder.encoder.conv2.register_forward_hook(lambda m, i, o: captured.append(o))
    audio, lengths = _batch([24_000])
    _, out_lengths = encoder(audio, lengths)
    _hf_30s(encoder, audio[0].numpy())
    hook.remove()
    n = int(out_lengths[0])
    torch.testing.assert_close(captured[0][..., :n], captured[1][..., :n], atol=1e-5, rtol=1e-5)


def test_equals_hf_encoder_built_for_the_same_length(encoder):
    """The per-call slice of the positional table equals an HF encoder built with max_source_positions=T."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    audio, lengths = _batch([20_000])
    features, out_lengths = encoder(audio, lengths)
    t_a, n = features.shape[1], int(out_lengths[0])
    short = WhisperEncoder(WhisperConfig(**TINY_ARCH, max_source_positions=t_a)).eval()
    state = encoder.encoder.state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:t_a]
    short.load_state_dict(state)
    n_samples = t_a * encoder.samples_per_frame
    mel = log_mel(
        nn.functional.pad(audio, (0, n_samples - audio.shape[1])),
        encoder.window,
        encoder.mel_filters,
        encoder.hop_length,
    )
    with torch.no_grad():
        expected = short(input_features=mel).last_hidden_state
    torch.testing.assert_close(features[:, :n], expected[:, :n], atol=1e-5, rtol=1e-5)
    assert features[:, n:].abs().max() == 0  # the padding frame is masked


def test_positional_table_restored_after_call_and_error(encoder):
    audio, lengths = _batch([8_000])
    encoder(audio, lengths)
    assert encoder.encoder.embed_positions.weight.shape[0] == 1500
    assert encoder.encoder.config.max_source_positions == 1500
    with pytest.raises(RuntimeError):
        encoder(audio[:, :, None], lengths)  # bad rank fails inside the encoder call
    assert encoder.encoder.embed_positions.weight.shape[0] == 1500
    assert encoder.encoder.config.max_source_positions == 1500


def test_frozen_and_kept_in_eval_mode(encoder):
    parent = nn.ModuleDict({"audio": encoder, "head": nn.Linear(32, 2)})
    parent.train()
    assert not encoder.encoder.training and not any(m.training for m in encoder.encoder.modules())
    assert encoder.training  # the wrapper follows its parent; only the frozen encoder stays in eval
    assert not any(p.requires_grad for p in encoder.parameters())
    features, _ = encoder(*_batch([4_000, 6_000]))
    assert not features.requires_grad
    # Deterministic in training mode (no dropout, no layerdrop): same input, same output.
    torch.testing.assert_close(features, encoder(*_batch([4_000, 6_000]))[0])


def test_state_dict_holds_only_encoder_weights(encoder):
    assert all(k.startswith("encoder.") for k in encoder.state_dict())


def test_clip_longer_than_30s_is_a_user_error(encoder):
    with pytest.raises(UserError, match="30 s"):
        encoder(torch.zeros(1, 480_001), torch.tensor([480_001]))


# ------------------------------------------------------------------------------- real weights
def flite_clip(text: str, path: Path) -> np.ndarray:
    """16 kHz float32 waveform of `text` spoken by flite's slt voice, layer-normed like the dataset."""
    import soundfile as sf

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(path)], check=True)
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16_000
    return (audio - audio.mean()) / (audio.std() + 1e-5)


@pytest.mark.integration
def test_real_tiny_en_short_clip_drift_and_transcript(whisper_tiny_dir, tmp_path):
    """Short-clip features vs the reference's 30 s padding (measured: mean cos ~0.97, rel. error ~0.2-0.25,
    because Whisper's self-attention also attends to the 30 s of padding); the Whisper decoder still reads
    the sentence from the short features."""
    from transformers import AutoTokenizer, WhisperForConditionalGeneration
    from transformers.modeling_outputs import BaseModelOutput

    encoder = WhisperAudioEncoder(whisper_tiny_dir)
    clip = flite_clip("The quick brown fox jumps over the lazy dog.", tmp_path / "fox.wav")
    features, lengths = encoder(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
    n = int(lengths[0])
    _, ref = _hf_30s(encoder, clip)
    cos = nn.functional.cosine_similarity(features[0, :n], ref[0, :n], dim=-1)  # [T_a]
    rel = ((features[0, :n] - ref[0, :n]).norm() / ref[0, :n].norm()).item()
    print(f"short vs 30 s: mean cos {cos.mean():.4f}, min cos {cos.min():.4f}, relative error {rel:.4f}")
    assert cos.mean() > 0.95 and rel < 0.35

    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(whisper_tiny_dir)
    out = model.generate(
        encoder_outputs=BaseModelOutput(last_hidden_state=features[:, :n]),
        max_new_tokens=20,
        do_sample=False,
        num_beams=1,
    )
    text = tokenizer.batch_decode(out, skip_special_tokens=True)[0].lower()
    assert "quick brown fox jumps over the lazy dog" in text
