"""`mome serve RUN [--port 7860]`: a local web page where a dropped or recorded clip is transcribed at every
rate combination, with its cost and the cascade's choice (`mome.serve`)."""

from __future__ import annotations

import argparse

from mome.commands import add_base_model_check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory, checkpoint file or export")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. decode.num_beams=1")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    add_base_model_check(parser)


def run(args: argparse.Namespace) -> int:
    from mome.api import load
    from mome.serve import serve

    recognizer = load(args.checkpoint, args.overrides, args.device, check_base_models=not args.no_base_model_check)
    serve(recognizer, args.host, args.port)
    return 0
