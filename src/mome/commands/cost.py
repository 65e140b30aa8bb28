"""`mome cost CONFIG`: LLM input tokens and analytic prefill FLOPs per second of speech at each rate
combination (see `mome.analysis.cost`), built on the meta device (no weights needed)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name (a file in src/mome/presets/) or YAML file")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. model.compression.audio_rates=[4,8]")
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length the attention cost is counted for")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from mome.analysis.cost import cost_table, markdown, uncompressed
    from mome.config import load_config

    cfg = load_config(args.config, args.overrides)
    table = cost_table(cfg, args.seconds, extra=[uncompressed(cfg)])
    print(json.dumps(table, indent=1) if args.json else markdown(table))
    return 0
