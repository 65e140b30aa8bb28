"""Load the official AV-HuBERT fairseq checkpoints (and mome's own lip-encoder files) without fairseq.

The official `.pt` is a fairseq trainer pickle: `cfg` (a plain dict, maybe a
DictConfig), `model` (the state dict) and `task_state` holding fairseq `Dictionary` objects. By default it is
read with `torch.load(weights_only=True)`: every fairseq / omegaconf / hydra / sentencepiece class it names is
replaced by an inert stub that only stores its state, so no code from the file runs. Any other unknown
global is refused with its name; executing the pickle needs `trusted=True` (Python) or, on the command line,
`--trusted-checkpoint` (`mome train/eval/transcribe`, which sets `trusted_checkpoints()` for the command).

    ckpt["model"] ─strip "encoder.w2v_model."─> drop pretraining-only keys ─> weight_g/v -> parametrization
                  ─> exact key and shape check (errors name the key) ─> AVHubertEncoder.load_state_dict
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import functools
import logging
import pickle
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mome.config import VideoEncoderConfig
from mome.errors import UserError
from mome.models.avhubert import STRUCTURAL_FIELDS, AVHubertArch, AVHubertEncoder, build_avhubert

log = logging.getLogger(__name__)

FINETUNED_PREFIX = "encoder.w2v_model."
DROPPED_KEYS = ("mask_emb", "label_embs_concat")
DROPPED_PREFIXES = ("final_proj.", "feature_extractor_audio.")  # pretraining heads; the unused audio front end
STUB_NAMESPACES = ("fairseq", "omegaconf", "hydra", "sentencepiece")
HEADS_BY_WIDTH = {768: 12, 1024: 16}  # the head count is not in any tensor shape
POS_CONV = "encoder.pos_conv.0."


TRUST_HINT = "if you trust this file, pass --trusted-checkpoint (Python: trusted=True)"
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("mome_trusted_checkpoints", default=False)


@contextlib.contextmanager
def trusted_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Inside the block every AV-HuBERT file is read as with `trusted=True`: how `--trusted-checkpoint`
    reaches the loader deep inside training and evaluation without a flag on every function between."""
    token = _TRUSTED.set(enabled)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def trusted_checkpoint_enabled() -> bool:
    """Whether the caller is inside `trusted_checkpoints(True)` (to pass the choice on to a spawned process)."""
    return _TRUSTED.get()


class CheckpointError(UserError):
    """An AV-HuBERT checkpoint that cannot be used as it is; the message names the file and the key."""


# --------------------------------------------------------------------------------------- unpickling
class PickleStub:
    """Inert stand-in for a class of fairseq (or its config libraries); keeps whatever state it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots) form
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


@functools.cache
def _stub(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return type(name, (PickleStub,), {"__module__": module, "__qualname__": name})


def _stubbable(dotted: str) -> bool:
    return dotted.split(".", 1)[0] in STUB_NAMESPACES


def _real_safe_globals(dotted: str) -> Any | None:
    """Harmless real classes a fairseq pickle may name (legacy `args`, DictConfig type metadata)."""
    return {"argparse.Namespace": argparse.Namespace, "typing.Any": typing.Any}.get(dotted)


def _safe_load(path: Path) -> Any:
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) files: try with the usual stubs and report what fails
        unsafe = ["fairseq.data.dictionary.Dictionary"]
    allowed: list[Any] = []
    refused = []
    for name in unsafe:
        if _real_safe_globals(name) is not None:
            allowed.append((_real_safe_globals(name), name))
        elif _stubbable(name):
            allowed.append((_stub(name), name))
        else:
            refused.append(name)
    if refused:
        raise CheckpointError(
            f"{path}: refusing to unpickle {', '.join(refused)} with the safe loader; "
            f"{TRUST_HINT} (this executes code from the pickle)"
        )
    with torch.serialization.safe_globals(allowed):
        try:
            return _weights_only_load(path)
        except pickle.UnpicklingError as e:
            names = ", ".join(re.findall(r"GLOBAL ([\w.]+)", str(e))) or str(e).splitlines()[0]
            message = f"{path}: the safe loader cannot read {names}; {TRUST_HINT} (this executes code from it)"
            raise CheckpointError(message) from None


def _weights_only_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # no copy of a 1.3 GB file
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format


class _StubbingUnpickler(pickle.Unpickler):
    """Full unpickler for trusted files: fairseq and friends need not be installed."""

    def find_class(self, module: str, name: str) -> Any:
        if _stubbable(module):
            return _stub(f"{module}.{name}")
        return super().find_class(module, name)


class _StubbingPickle:
    Unpickler = _StubbingUnpickler
    load = pickle.load
    __name__ = "mome_stubbing_pickle"


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict[str, Any]:
    """The raw checkpoint dict. `trusted=True` (or `trusted_checkpoints()`) executes the pickle: only for
    files you trust, needed only for exotic ones."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"AV-HuBERT checkpoint not found: {path}")
    if trusted or _TRUSTED.get():
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_StubbingPickle)
    else:
        ckpt = _safe_load(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


# ------------------------------------------------------------------------------------ state dict mapping
def _plain(obj: Any) -> Any:
    """cfg as plain Python: dicts stay dicts; a stubbed DictConfig is unwrapped through `_content`."""
    if isinstance(obj, PickleStub):
        for attr in ("_content", "_val"):
            if attr in obj.__dict__:
                return _plain(obj.__dict__[attr])
        return {k: _plain(v) for k, v in obj.__dict__.items()}
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def encoder_state(ckpt: dict[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """`ckpt["model"]` (or a bare state dict) reduced to the encoder's keys, prefix stripped."""
    state = ckpt.get("model", ckpt)
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{where}: no 'model' state dict")
    if any(k.startswith(FINETUNED_PREFIX) for k in state):  # fine-tuned: keep the encoder, drop decoder.*
        state = {k[len(FINETUNED_PREFIX) :]: v for k, v in state.items() if k.startswith(FINETUNED_PREFIX)}
    return {
        k: v
        for k, v in state.items()
        if k not in DROPPED_KEYS and not k.startswith(DROPPED_PREFIXES) and torch.is_tensor(v)
    }


def map_pos_conv_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq's `weight_g`/`weight_v` (or a folded `weight`) -> torch's parametrization names."""
    state = dict(state)
    g, v, w = (state.pop(POS_CONV + n, None) for n in ("weight_g", "weight_v", "weight"))
    if w is not None and g is None and v is None:  # folded: any (g, v) with g * v/|v| = w will do
        g, v = torch.linalg.vector_norm(w, dim=(0, 1), keepdim=True), w
    if g is not None:
        state[POS_CONV + "parametrizations.weight.original0"] = g
    if v is not None:
        state[POS_CONV + "parametrizations.weight.original1"] = v
    return state


def _heads(cfg: dict[str, Any], width: int, where: str) -> int:
    model_cfg = cfg.get("model") or {}
    for source in (((model_cfg.get("w2v_args") or {}).get("model") or {}), model_cfg, cfg):  # fine-tuned first
        if isinstance(source, dict) and source.get("encoder_attention_heads"):
            return int(source["encoder_attention_heads"])
    if width in HEADS_BY_WIDTH:
        log.info("%s: no encoder_attention_heads in cfg; using %d for width %d", where, HEADS_BY_WIDTH[width], width)
        return HEADS_BY_WIDTH[width]
    raise CheckpointError(f"{where}: cannot tell the head count of a width-{width} encoder; set arch.heads")


def infer_arch(
    state: dict[str, torch.Tensor], cfg: dict[str, Any] | None = None, where: str = "checkpoint"
) -> dict[str, Any]:
    """The structural arch fields, read from tensor shapes; only the head count comes from cfg."""
    try:
        d = state["encoder.layer_norm.weight"].numel()
        v = state[POS_CONV + "parametrizations.weight.original1"]
        trunk = "feature_extractor_video.resnet.trunk."
        stages = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(trunk) + r"layer(\d+)\.", k))})
        blocks = [1 + max(int(k.split(".")[4]) for k in state if k.startswith(f"{trunk}layer{s}.")) for s in stages]
        return {
            "embed_dim": d,
            "layers": 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")),
            "heads": _heads(cfg or {}, d, where),
            "ffn_dim": state["encoder.layers.0.fc1.weight"].shape[0],
            "conv_pos": v.shape[2],
            "conv_pos_groups": d // v.shape[1],
            "stem_channels": state["feature_extractor_video.resnet.frontend3D.0.weight"].shape[0],
            "resnet_channels": [state[f"{trunk}layer{s}.0.conv1.weight"].shape[0] for s in stages],
            "resnet_blocks": blocks,
        }
    except KeyError as e:
        raise CheckpointError(f"{where}: not an AV-HuBERT encoder state dict (no key {e})") from None


def check_and_load(model: AVHubertEncoder, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Load strictly: every key present with the right shape, or an error naming the key. LoRA stays fresh."""
    expected = {k: v for k, v in model.state_dict().items() if ".lora_" not in k}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and ".lora_" not in k]
    if missing or unexpected:
        problems = (("missing", missing), ("unexpected", unexpected))
        parts = [f"{what} key(s) {', '.join(keys[:8])}" for what, keys in problems if keys]
        raise CheckpointError(f"{where}: " + "; ".join(parts))
    for k, ref in expected.items():
        if state[k].shape != ref.shape:
            raise CheckpointError(f"{where}: key {k} has shape {list(state[k].shape)}, expected {list(ref.shape)}")
    model.load_state_dict({k: state[k].to(ref.dtype) for k, ref in expected.items()}, strict=False)


# ---------------------------------------------------------------------------------------- public API
def load_avhubert(path: str | Path, arch: dict[str, Any] | None = None, trusted: bool = False) -> AVHubertEncoder:
    """An encoder with the weights of an official AV-HuBERT `.pt` (pretrained or fine-tuned) or a mome file.

    Args:
        path: the checkpoint file.
        arch: config fields (`lora_rank`, `frozen`, ...); structural fields must agree with the file.
        trusted: execute the pickle instead of the weights-only load (only for files you trust).
    """
    ckpt = read_checkpoint(path, trusted=trusted)
    where = str(path)
    state = map_pos_conv_keys(encoder_state(ckpt, where))
    saved = ckpt.get("avhubert_arch")  # mome's own lip-encoder files carry their arch
    if isinstance(saved, dict):
        found = {k: saved[k] for k in STRUCTURAL_FIELDS}
    else:
        found = infer_arch(state, _plain(ckpt.get("cfg") or ckpt.get("args")), where)
    arch = dict(arch or {})
    requested = AVHubertArch.from_dict(arch)
    if "name" in arch or any(k in STRUCTURAL_FIELDS for k in arch):  # the config names a size: it must match
        for k in STRUCTURAL_FIELDS:
            if getattr(requested, k) != found[k]:
                wanted = getattr(requested, k)
                raise CheckpointError(f"{where}: has {k}={found[k]} but model.encoders.video.arch gives {wanted}")
    fields = {**dataclasses.asdict(requested), **found}
    model = AVHubertEncoder(AVHubertArch(**fields))
    check_and_load(model, state, where)
    return model


def lip_encoder_file(model: AVHubertEncoder) -> dict[str, Any]:
    """The content of a mome encoder file (`{"avhubert_arch", "model"}`, LoRA left out) that `load_avhubert`
    reads back safely; `training.pretrain_video.save_lip_encoder` writes it."""
    state = {k: v for k, v in model.state_dict().items() if ".lora_" not in k}
    return {"avhubert_arch": model.arch.to_dict(), "model": state}


def build_video_encoder(cfg: VideoEncoderConfig, trusted: bool = False) -> AVHubertEncoder:
    """The configured video encoder: loaded from `cfg.path` when given, else random weights from `cfg.arch`."""
    if cfg.path:
        return load_avhubert(cfg.path, cfg.arch, trusted=trusted)
    return build_avhubert(cfg.arch)
