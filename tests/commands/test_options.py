"""Flags generated from an options dataclass (`mome.commands.options`): types, help, defaults, coverage."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from mome.commands import demo, reproduce
from mome.commands.options import add_option_arguments, field_docs, options_from_args


@dataclass
class Base:
    count: int = 3
    """How many, in the base."""
    ratio: float = 0.5
    name: str = "x"
    """A name."""


@dataclass
class Options(Base):
    ratio: float = 0.25
    """The subclass's own words."""
    name: str = "y"
    where: Path = Path("here")
    limit: int | None = None
    cap: float | None = 2.0
    ids: list[int] = field(default_factory=lambda: [1, 2])
    snrs: list[float | None] = field(default_factory=lambda: [None, 0.0])
    tags: list[str] = field(default_factory=list)
    fast: bool = False
    table: dict[str, int] = field(default_factory=dict)
    rest: list[str] = field(default_factory=list)


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_option_arguments(parser, Options, skip=("table",), positional=("rest",), **kwargs)
    return parser


def _parse(argv: list[str], **kwargs) -> Options:
    return options_from_args(Options, _parser(**kwargs).parse_intermixed_args(argv))


def test_each_annotation_parses_as_its_type() -> None:
    opts = _parse(
        [
            "--count",
            "7",
            "--ratio",
            "1e-1",
            "--name",
            "n",
            "--where",
            "a/b",
            "--limit",
            "4",
            "--cap",
            "3",
            "--ids",
            "5",
            "6",
            "--snrs",
            "none",
            "-5",
            "--tags",
            "p",
            "q",
            "--fast",
            "k=v",
        ]
    )
    assert opts == Options(
        count=7,
        ratio=0.1,
        name="n",
        where=Path("a/b"),
        limit=4,
        cap=3.0,
        ids=[5, 6],
        snrs=[None, -5.0],
        tags=["p", "q"],
        fast=True,
        rest=["k=v"],
    )
    assert isinstance(opts.where, Path) and isinstance(opts.snrs[1], float)
    for bad in (["--count", "1.5"], ["--limit", "none"], ["--ids", "none"]):
        with pytest.raises(argparse.ArgumentError):
            _parser().parse_args(bad)


def test_flags_not_given_keep_the_defaults_and_base_values_lie_between() -> None:
    assert _parse([]) == Options()
    args = _parser().parse_args(["--count", "9"])
    assert options_from_args(Options, args, {"count": 1, "limit": 2}) == Options(count=9, limit=2)


def test_flag_names_and_help_come_from_the_fields_and_their_docstrings() -> None:
    actions = {a.dest: a for a in _parser()._actions}
    assert actions["count"].option_strings == ["--count"] and actions["rest"].option_strings == []
    assert actions["count"].help == "How many, in the base. (default 3)"  # inherited docstring
    assert actions["ratio"].help == "The subclass's own words. (default 0.25)"
    assert actions["name"].help == "A name. (default y)"  # redeclared without one: the base's, the new default
    assert actions["where"].help == "where (default here)" and actions["limit"].help == "limit"
    assert actions["ids"].help == "ids (default 1 2)" and actions["fast"].help == "fast"
    assert field_docs(Options)["count"] == "How many, in the base."


def test_a_field_override_replaces_the_generated_syntax() -> None:
    ids = {"type": lambda text: [int(s) for s in text.split(",")]}
    opts = _parse(["--ids", "4,5"], overrides={"ids": ids})
    assert opts.ids == [4, 5]
    assert next(a for a in _parser(overrides={"ids": ids})._actions if a.dest == "ids").help == "ids (default 1,2)"


def test_a_field_without_a_flag_type_must_be_skipped_or_given_a_syntax() -> None:
    with pytest.raises(TypeError, match="table"):
        add_option_arguments(argparse.ArgumentParser(), Options, positional=("rest",))
    parser = argparse.ArgumentParser()
    add_option_arguments(parser, Options, positional=("rest",), overrides={"table": {"type": lambda t: {t: 1}}})
    assert options_from_args(Options, parser.parse_args(["--table", "a"])).table == {"a": 1}
    with pytest.raises(ValueError, match="nope"):
        add_option_arguments(argparse.ArgumentParser(), Options, skip=("table", "nope"))


@pytest.mark.parametrize(
    ("module", "cls", "skip"),
    [
        (demo, "mome.workflows.demo.DemoOptions", "mome.commands.demo.SKIP"),
        (reproduce, "mome.workflows.reproduce_plan.ReproduceOptions", "mome.workflows.reproduce_plan.NO_FLAG"),
    ],
)
def test_every_field_of_a_command_is_a_flag_or_skipped(module, cls: str, skip: str) -> None:
    import importlib

    def named(path: str):
        module_name, name = path.rsplit(".", 1)
        return getattr(importlib.import_module(module_name), name)

    options = named(cls)
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    dests = {a.dest for a in parser._actions} - {"help"}
    assert dests == {f.name for f in fields(options)} - set(named(skip))
    assert dests <= set(field_docs(options)), "every flag's help is its field's docstring"


def test_a_percent_sign_in_a_docstring_is_printed_as_written() -> None:
    @dataclass
    class Shares:
        train: float = 0.8
        """Share of the corpus for training (80% by default)."""

    parser = argparse.ArgumentParser()
    add_option_arguments(parser, Shares)
    assert "(80% by default). (default 0.8)" in " ".join(parser.format_help().split())
