"""`mome serve RUN [--port 7860]`: a local web page where a dropped or recorded clip is transcribed at every
rate combination, with its cost and the cascade's choice (`mome.inference.serve`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from mome.commands import add_base_model_check
from mome.inference.serve import DEFAULT_MAX_UPLOAD_MB, DEFAULT_QUEUE


def bounded(kind: Callable[[str], float], ok: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse `type` that parses with `kind` and accepts what `ok` allows, so a bad option fails while
    parsing with one line (not an OverflowError at bind time)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text}")
        return value

    return parse


port = bounded(int, lambda v: 1 <= v <= 65535, "a port number 1-65535")
megabytes = bounded(float, lambda v: 0 < v < math.inf, "a positive size in MB")
waiting = bounded(int, lambda v: v >= 0, "a whole number >= 0")  # requests that may wait


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory, checkpoint file or export")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. decode.num_beams=1")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=port, default=7860, help="TCP port, 1-65535 (default 7860)")
    parser.add_argument(
        "--max-upload-mb",
        type=megabytes,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"refuse a request body over this size (413; default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--queue",
        type=waiting,
        default=DEFAULT_QUEUE,
        metavar="N",
        help=f"requests that may wait while one clip decodes; more get 503 (default {DEFAULT_QUEUE})",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_base_model_check(parser)


def run(args: argparse.Namespace) -> int:
    from mome.inference.api import load
    from mome.inference.serve import listen, serve

    sock = listen(args.host, args.port)  # a port in use fails here, before the (slow) model load
    try:
        recognizer = load(args.checkpoint, args.overrides, args.device, check_base_models=not args.no_base_model_check)
        serve(recognizer, sock, args.max_upload_mb, args.queue)
    finally:
        sock.close()
    return 0
