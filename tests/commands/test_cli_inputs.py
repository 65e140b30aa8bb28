"""Command-line inputs refused in one line, or accepted wherever they stand (issue 27)."""

from __future__ import annotations

import pytest

from mome.cli import COMMANDS, main, parse


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["train", "tiny", "--restart-optimizer", "data.root=c", "train.max_steps=2"], "restart_optimizer"),
        (["demo", "data.root=c", "--steps", "3", "train.max_steps=2"], "steps"),
        (["params", "tiny", "data.root=c", "--json", "train.max_steps=2"], "json"),
        (["cost", "tiny", "data.root=c", "--json", "train.max_steps=2"], "json"),
        (["reproduce", "data.root=c", "--quick", "train.max_steps=2"], "quick"),
    ],
)
def test_an_option_between_overrides_is_accepted(argv: list[str], flag: str) -> None:
    args, _ = parse(argv)
    assert args.overrides == ["data.root=c", "train.max_steps=2"] and getattr(args, flag)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_parses_options_anywhere(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:  # --help; a parser that cannot intermix raises TypeError instead
        main([command, "--help"])
    assert exit_.value.code == 0 and f"mome {command}" in capsys.readouterr().out
