"""whisper_ct2: CT2 file parsing (hand-built file) and, with the real tiny.en wheel, a converted model that
transcribes a flite sentence."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from mome.convert.whisper_ct2 import read_ct2


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, array: np.ndarray, code: int, raw: bytes | None = None) -> bytes:
    raw = array.tobytes() if raw is None else raw
    shape = b"".join(struct.pack("<I", d) for d in array.shape)
    return _string(name) + struct.pack("<B", array.ndim) + shape + struct.pack("<BI", code, len(raw)) + raw


def test_read_ct2_dtypes_shapes_and_aliases():
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    heads = np.array(6, dtype=np.int32)
    bf16 = np.array([1.5, -2.0], dtype=np.float32)
    bf16_raw = (bf16.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    data = (
        struct.pack("<I", 6)
        + _string("WhisperSpec")
        + struct.pack("<II", 3, 3)
        + _variable("encoder/conv1/weight", w, 4)
        + _variable("encoder/num_heads", heads, 3)
        + _variable("x/bf16", bf16, 5, bf16_raw)
        + struct.pack("<I", 1)
        + _string("alias/w")
        + _string("encoder/conv1/weight")
    )
    variables = read_ct2(data)
    np.testing.assert_array_equal(variables["encoder/conv1/weight"], w)
    assert int(variables["encoder/num_heads"]) == 6
    np.testing.assert_array_equal(variables["x/bf16"], bf16)
    assert variables["alias/w"] is variables["encoder/conv1/weight"]


def test_read_ct2_rejects_other_models():
    with pytest.raises(ValueError, match="TransformerSpec"):
        read_ct2(struct.pack("<I", 6) + _string("TransformerSpec") + struct.pack("<I", 1))


@pytest.mark.integration
def test_tiny_en_transcribes_flite_sentence(whisper_tiny_dir, tmp_path):
    import soundfile as sf
    import torch
    from transformers import AutoFeatureExtractor, AutoTokenizer, WhisperForConditionalGeneration

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "generation_config.json",
        "mome_source.json",
    ):
        assert (whisper_tiny_dir / name).is_file(), name
    wav = tmp_path / "s.wav"
    subprocess.run(
        ["flite", "-voice", "slt", "-t", "Please call Stella and ask her to bring these things.", "-o", str(wav)],
        check=True,
    )
    audio, rate = sf.read(wav, dtype="float32")
    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir, local_files_only=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(whisper_tiny_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(whisper_tiny_dir, local_files_only=True)
    assert model.config.d_model == 384 and model.config.encoder_layers == 4
    features = extractor(audio, sampling_rate=rate, return_tensors="pt").input_features  # [1, 80, 3000]
    with torch.no_grad():
        out = model.generate(features, max_new_tokens=30, do_sample=False, num_beams=1)
    text = tokenizer.batch_decode(out, skip_special_tokens=True)[0]
    words = "".join(c for c in text.lower() if c.isalpha() or c == " ").split()
    assert words == "please call stella and ask her to bring these things".split(), text
