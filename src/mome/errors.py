"""Errors that the command line reports as one line, without a traceback.

Raise `UserError` for anything the user can fix (a bad config field, a missing file, an unknown rate);
let programming errors propagate as ordinary exceptions so that their tracebacks stay visible.
"""


class UserError(Exception):
    """A problem with the user's input, reported by `mome` as `mome: error: <message>`."""


class ConfigError(UserError, ValueError):
    """A config field has an invalid value; the message names the field (dotted path)."""


class Interrupted(UserError):
    """A run stopped by SIGINT or SIGTERM after saving; `mome` exits with `code` (130 or 143), never 0."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
