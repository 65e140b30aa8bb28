"""`mome params CONFIG`: parameter counts of a preset or YAML file, built on the meta device (no weights)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name (a file in src/mome/presets/) or YAML file")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. model.adapter.mome.top_k=2")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from mome.analysis.params import parameter_report
    from mome.config import load_config

    cfg = load_config(args.config, args.overrides)
    report = parameter_report(cfg)
    if args.json:
        print(json.dumps({name: value for name, value in report.rows()}, indent=2))
        return 0
    print(f"{cfg.name}: adapter={cfg.model.adapter.kind}, task={cfg.model.compression.task}")
    for name, value in report.rows():
        print(f"  {name:<34} {value:>15,d}  ({value / 1e6:8.2f}M)")
    return 0
