"""Errors that the command line reports as one line, without a traceback.

Raise `UserError` for anything the user can fix (a bad config field, a missing file, an unknown rate);
let programming errors propagate as ordinary exceptions so that their tracebacks stay visible.
"""


class UserError(Exception):
    """A problem with the user's input, reported by `mome` as `mome: error: <message>`."""


class ConfigError(UserError, ValueError):
    """A config field has an invalid value; the message names the field (dotted path)."""


class ClipTooLong(UserError):
    """A clip longer than a model reads at once (`constants.MAX_CLIP_SECONDS`): one rule and one message for
    audio and video, rather than a video-only clip decoded into one short sentence."""

    def __init__(self, seconds: float, limit: float, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}the clip is {seconds:.1f} s long, longer than the {limit:g} s a model reads at "
            "once: cut it into shorter clips"
        )


class Interrupted(UserError):
    """A run stopped by SIGINT or SIGTERM after saving; `mome` exits with `code` (130 or 143), never 0."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
