"""Property: any KEY=VALUE override of any config field gives a validated config or one `ConfigError` line,
never a traceback (hypothesis draws the field and the value text)."""

from __future__ import annotations

import dataclasses
import typing

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mome.config import Config, ConfigError, load_config


def _fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of every field of the config tree, sections included."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out.append(path)
        if dataclasses.is_dataclass(hints[f.name]):
            out += _fields(hints[f.name], f"{path}.")
    return out


FIELDS = _fields(Config)
YAMLISH = st.sampled_from(
    [
        "",
        "null",
        "~",
        "true",
        "-1",
        "0",
        "1e400",
        "-1e-3",
        "nan",
        ".inf",
        "[",
        "]",
        "{",
        "}",
        "[1,",
        "{a: 1}",
        "[4, 16]",
        "[null]",
        "'",
        '"',
        ":",
        "- x",
        "&a [*a]",
        "!!python/object:os.system",
        "2026-12-01",
        "0x1F",
        "9" * 400,
        "é",
        "\x00",
        "\t",
        "a: b: c",
        "[[1]]",
        "{arch: 1}",
        "=",
        "fp32",
        "avsr",
        "~nosuchuser/x",
    ]
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.lists(YAMLISH, min_size=1, max_size=4).map("".join),
    st.integers().map(str),
    st.floats().map(str),
)
PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)  # a key is typed on one line
KEYS = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS).map(lambda k: k + ".x"), PRINTABLE)


@settings(max_examples=200, deadline=None, database=None)
@given(key=KEYS, value=VALUES)
@example(key="model.llm.dtype", value="{}")  # was a TypeError (an unhashable dtype looked up among legacy names)
@example(key="train.lr", value="9" * 400)  # was an OverflowError (math.isfinite of a huge int)
@example(key="data.root", value="~nosuchuser/x")  # was a RuntimeError (pathlib's expanduser)
@example(key="model.llm.path", value="n" + "9" * 400)  # was an OSError: a file name too long for is_dir
def test_random_overrides_never_give_a_traceback(key, value):
    override = f"{key}={value}"
    try:
        cfg = load_config("tiny", [override])
    except ConfigError as err:
        assert "\n" not in str(err).strip(), str(err)
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=100, deadline=None, database=None)
@given(items=st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=2, max_size=4))
def test_random_override_lists_never_give_a_traceback(items):
    try:
        load_config("tiny", [f"{k}={v}" for k, v in items])
    except ConfigError as err:
        assert "\n" not in str(err).strip(), str(err)
