"""Shared fixtures. Nothing in the test suite downloads anything."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mome.errors import UserError


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def fast_cpu_bf16(monkeypatch) -> None:
    """`auto` precision follows the CPU flags (real or faked by a test) as on a CPU whose bf16 matmul is fast, not
    this machine's measured speed (`mome.precision.cpu_bf16_speedup`, tested on its own)."""
    import mome.precision

    monkeypatch.setattr(mome.precision, "cpu_bf16_speedup", lambda: 4.0)


@pytest.fixture(scope="session")
def embedded(tmp_path_factory) -> Callable[[str], Path]:
    """Converts an embedded model from its PyPI wheel into a cache private to this test session (so that
    every run exercises the converters), once per session; skips when the wheel is not installed."""
    from mome.convert.embedded import EMBEDDED, ensure_embedded, package_dirs

    cache = str(tmp_path_factory.getbasetemp() / "mome-cache")

    def get(name: str) -> Path:
        try:
            package_dirs(EMBEDDED[name])
        except UserError as err:
            pytest.skip(f"{name}: wheel not installed: {err}")
        old = os.environ.get("MOME_CACHE")
        os.environ["MOME_CACHE"] = cache
        try:
            return ensure_embedded(name)
        finally:
            os.environ.pop("MOME_CACHE") if old is None else os.environ.__setitem__("MOME_CACHE", old)

    return get


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A tiny synthetic corpus shared by the data and synthetic tests (built once per session, about 2 s)."""
    from mome.synthetic.corpus import synthesize_corpus
    from tiny import TINY_CORPUS

    root = tmp_path_factory.mktemp("corpus")
    report = synthesize_corpus(root, 8, seed=5, **TINY_CORPUS)
    assert report["written"] == 8, report
    return root


@pytest.fixture(scope="session")
def smollm2_dir(embedded) -> Path:
    return embedded("smollm2-135m")


@pytest.fixture(scope="session")
def whisper_tiny_dir(embedded) -> Path:
    return embedded("whisper-tiny.en")
