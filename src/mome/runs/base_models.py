"""The frozen base models a run was trained on (LLM, audio and video encoders), fingerprinted by the sha256 of
their files, so that trained adapters loaded onto other base models fail with one line instead of decoding
garbage: the most common complaint about shared checkpoints in the neighbouring projects.

Training saves the fingerprints in every checkpoint (`base_models`); loading a run or an export compares them
with the files its config points at now. Hashes are cached per (path, size, mtime), so a multi-gigabyte
Llama is read once per machine, not at every load.

A user who knows the base models are the right ones (re-converted, or an export that lost base_models.json)
turns the check off explicitly: `--no-base-model-check` on the command line, `check_base_models=False` in
`mome.load`, both through `unchecked_base_models()`; what the check would have refused is then a warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mome.config import ModelConfig
from mome.convert.embedded import cache_dir, resolve_model_path
from mome.errors import UserError
from mome.io import atomic_write_text, file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".model", ".txt", ".tiktoken")
"""The files of a model directory that define it: weights, configs and tokenizer files."""
NOT_THE_MODEL = {"mome_source.json"}
"""Written beside a converted model with the conversion's time and versions: it differs between identical
conversions."""


MISSING_HINT = "or pass --no-base-model-check (mome.load: check_base_models=False) if you know they are the right ones"
_UNCHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("mome_unchecked_base_models", default=False)


@contextlib.contextmanager
def unchecked_base_models(enabled: bool = True) -> Iterator[None]:
    """Inside the block (`enabled`), loading skips the base-model check with a warning instead of refusing."""
    token = _UNCHECKED.set(enabled)
    try:
        yield
    finally:
        _UNCHECKED.reset(token)


def base_model_check() -> bool:
    """Whether loading checks the base models (the default), i.e. the caller is not in `unchecked_base_models`."""
    return not _UNCHECKED.get()


def _cache_path() -> Path:
    return cache_dir() / "sha256.json"


def _sha256(path: Path, cache: dict[str, str]) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in cache:
        cache[key] = file_sha256(path)
    return cache[key]


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name not in NOT_THE_MODEL
    )


def _model_paths(model_cfg: ModelConfig) -> dict[str, str]:
    """{"llm": spec, "audio_encoder": spec, "video_encoder": spec} for the base models given by path."""
    comp, enc = model_cfg.compression, model_cfg.encoders
    paths = {"llm": model_cfg.llm.path}
    if comp.uses_audio and enc.audio.kind != "none":
        paths["audio_encoder"] = enc.audio.path
    if comp.uses_video and enc.video.kind != "none":
        paths["video_encoder"] = enc.video.path
    return {name: spec for name, spec in paths.items() if spec}


def fingerprints(model_cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """{name: {"path": spec, "files": {relative file: sha256}}} of every base model given by path."""
    cache_file = _cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    out = {}
    for name, spec in _model_paths(model_cfg).items():
        try:
            root = resolve_model_path(spec)  # the loaders' own mapping of `embedded:<name>` and paths
        except UserError:
            continue  # a missing model: reported by the loader that needs it
        base = root if root.is_dir() else root.parent
        out[name] = {"path": spec, "files": {str(f.relative_to(base)): _sha256(f, cache) for f in _files(root)}}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_file, json.dumps(cache, indent=0, sort_keys=True))
    except OSError:
        pass  # a read-only home: hashes are recomputed next time
    return out


def check(saved: dict[str, dict[str, Any]] | None, model_cfg: ModelConfig, where: str) -> None:
    """Raise a one-line `UserError` naming the first base model file that differs from training's (a warning
    inside `unchecked_base_models`)."""
    if not saved:
        return  # a checkpoint written before fingerprints, or a model without base models given by path
    try:
        _compare(saved, model_cfg, where)
    except UserError as err:
        if base_model_check():
            raise
        print(f"mome: warning: {err}; loading anyway (base-model check off)", file=sys.stderr, flush=True)


def _compare(saved: dict[str, dict[str, Any]], model_cfg: ModelConfig, where: str) -> None:
    now = fingerprints(model_cfg)
    for name, then in saved.items():
        current = now.get(name)
        if current is None:
            continue  # this config no longer loads it (e.g. an override); the loader decides
        for file, digest in then["files"].items():
            here = current["files"].get(file)
            if here != digest:
                what = "is missing" if here is None else f"differs (sha256 {here[:12]}, trained with {digest[:12]})"
                raise UserError(
                    f"{where}: {name} {current['path']}: {file} {what}; these adapters were trained on other "
                    f"base weights: point the config at those (e.g. model.llm.path=DIR), {MISSING_HINT}"
                )
