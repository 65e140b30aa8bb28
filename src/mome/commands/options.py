"""Command-line flags generated from an options dataclass, so that its fields are the one statement of each
option: `train_speakers: int = 128` with its attribute docstring becomes `--train-speakers TRAIN_SPEAKERS`
with that docstring as its help and the default shown after it."""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, Field, fields
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCALARS: tuple[type, ...] = (int, float, str, Path)
"""The annotations a flag parses, alone, as `X | None` or as list elements (`list[int]`, `list[float | None]`)."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string right after it in the class body), whitespace collapsed; a
    subclass's own docstring wins over a base class's, and a field it redeclares without one keeps the base's."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if k is not object]):
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        assert isinstance(body, ast.ClassDef)
        for node, after in zip(body.body, body.body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, else (annotation, False)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return annotation, False


def _scalar(annotation: Any, name: str) -> Callable[[str], Any]:
    """The parser of one token: the scalar type itself, or for `X | None` (a list element) one that reads `none`
    as None."""
    inner, optional = _optional(annotation)
    if inner not in SCALARS:
        raise TypeError(f"option {name!r}: no flag for type {annotation!r}; pass it in `skip` or `overrides`")
    if not optional:
        return inner

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else inner(text)

    parse.__name__ = inner.__name__  # argparse names the type in its error message
    return parse


def _kwargs(annotation: Any, default: Any, name: str) -> dict[str, Any]:
    """`add_argument` keywords of a field with this annotation: its type, and `nargs` for a list."""
    if annotation is bool:
        if default is not False:
            raise TypeError(f"option {name!r}: a bool flag switches on, so its default must be False")
        return {"action": "store_true", "default": False}
    if typing.get_origin(annotation) is list:
        (element,) = typing.get_args(annotation)
        return {"type": _scalar(element, name), "nargs": "+"}
    inner, _ = _optional(annotation)  # a flag not given is None: no token for it
    return {} if inner is str else {"type": _scalar(inner, name)}


def _default(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]


def _shown(value: Any, sep: str) -> str:
    """A default as it is typed on the command line."""
    if isinstance(value, list):
        return sep.join(_shown(v, sep) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_option_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: Collection[str] = (),
    positional: Collection[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """A flag per field of dataclass `cls` (`--name-with-dashes`) but those in `skip`; those in `positional` are
    positional (`nargs="*"`). `overrides`: `add_argument` keywords over the generated ones of a field; with a
    `type` or `action`, the field's syntax is its own (e.g. a comma-separated list) and they replace them. Flags default to None (switches to False), so
    `options_from_args` can tell the given ones apart; the help shows the field's default."""
    overrides = overrides or {}
    names = {f.name for f in fields(cls)}
    unknown = (set(skip) | set(positional) | set(overrides)) - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in fields(cls):
        if f.name in skip or not f.init:
            continue
        custom = dict(overrides.get(f.name, {}))
        text = custom.pop("help", docs.get(f.name, f.name.replace("_", " ")))
        text = text.replace("%", "%%")  # argparse formats help strings with %
        if f.name in positional:
            parser.add_argument(f.name, nargs="*", help=text, **custom)
            continue
        default = _default(f)
        own_syntax = "type" in custom or "action" in custom
        kwargs = dict(custom) if own_syntax else {**_kwargs(hints[f.name], default, f.name), **custom}
        if default is not None and kwargs.get("action") != "store_true":
            text += f" (default {_shown(default, ' ' if kwargs.get('nargs') else ',')})"
        parser.add_argument("--" + f.name.replace("_", "-"), help=text, **{"default": None, **kwargs})


def options_from_args(cls: type[T], args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> T:
    """`cls` from the parsed command line: the fields given there over `base` over the field defaults (a flag
    not given is None: `add_option_arguments`)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if f.init and getattr(args, f.name, None) is not None}
    return cls(**{**(base or {}), **given})
