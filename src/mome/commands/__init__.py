"""One module per `mome` subcommand (`add_arguments`, `run`); options shared by several are defined here."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mome.config import Combination, Config

TRUSTED_CHECKPOINT_HELP = (
    "execute the pickle of an official fairseq AV-HuBERT checkpoint (model.encoders.video.path) instead of "
    "the safe weights-only load: THIS RUNS CODE FROM THE FILE; only for files you trust (docs/data.md)"
)


def add_trusted_checkpoint(parser: argparse.ArgumentParser) -> None:
    """`--trusted-checkpoint`, off by default: the one way the command line lets a pickle run code."""
    parser.add_argument("--trusted-checkpoint", action="store_true", help=TRUSTED_CHECKPOINT_HELP)


BASE_MODEL_CHECK_HELP = (
    "load even if the frozen base models differ from those the adapters were trained on, or an export lacks "
    "base_models.json (a warning instead of an error): only if you know they are the right ones"
)


def add_base_model_check(parser: argparse.ArgumentParser) -> None:
    """`--no-base-model-check`, off by default: the one way to load adapters without the base-model check."""
    parser.add_argument("--no-base-model-check", action="store_true", help=BASE_MODEL_CHECK_HELP)


def run_trusting(args: argparse.Namespace, body: Callable[[argparse.Namespace], int]) -> int:
    """`body(args)` with the command's `--trusted-checkpoint` and `--no-base-model-check` choices in force, and
    only for its duration."""
    from mome.models.avhubert_checkpoint import trusted_checkpoints
    from mome.runs.base_models import unchecked_base_models

    with (
        trusted_checkpoints(args.trusted_checkpoint),
        unchecked_base_models(getattr(args, "no_base_model_check", False)),
    ):
        return body(args)


def collect_overrides(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Move KEY=VALUE items that options taking several values (`--snr clean 0 data.root=c`) swallowed to
    `args.overrides`, so that overrides may go anywhere on the command line."""
    for name in names:
        values = getattr(args, name) or []
        args.overrides += [v for v in values if "=" in v]
        setattr(args, name, [v for v in values if "=" not in v] or None)


def add_labelled_arguments(parser: argparse.ArgumentParser, labels: str | None = None, rates: bool = True) -> None:
    """The options of a command that reads a labelled split of a run: checkpoint, overrides, `--labels`
    (required unless `labels` gives a default), `--root`, `--rates`, `--limit`, `--device`, `--quiet`."""
    parser.add_argument("checkpoint", help="checkpoint file, run directory (its newest checkpoint) or export")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. decode.num_beams=5")
    parser.add_argument(
        "--labels",
        required=labels is None,
        default=labels,
        help="label CSV, a path or relative to the corpus root" + (f" (default {labels})" if labels else ""),
    )
    parser.add_argument("--root", help="corpus root, the same as data.root=DIR (default: the checkpoint's)")
    if rates:
        parser.add_argument("--rates", nargs="+", metavar="A,V", help="rate combinations, e.g. 4,2 16,5 (default: all)")
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trusted_checkpoint(parser)
    add_base_model_check(parser)


@dataclass
class Labelled:
    """What a labelled-split command has read and checked before the (slow) model build."""

    checkpoint: Path
    payload: dict[str, Any]
    cfg: Config
    combos: list[Combination]
    root: Path
    labels: Path


def open_labelled(args: argparse.Namespace, multi: tuple[str, ...] = ("rates",)) -> Labelled:
    """The checkpoint, its config and the split of a labelled-split command, each input checked. `multi`:
    options whose values may have swallowed KEY=VALUE overrides."""
    from mome.errors import UserError
    from mome.runs.checkpoint import checkpoint_config
    from mome.runs.load import load_checkpoint, resolve_checkpoint

    collect_overrides(args, multi)
    if args.root is not None:  # the flag is a shorthand: data.root is the one place the corpus is named
        args.overrides.append(("data.root", args.root))  # as given: no YAML parsing of a path
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    checkpoint = resolve_checkpoint(args.checkpoint)
    payload = load_checkpoint(checkpoint)
    cfg = checkpoint_config(payload, args.overrides)
    return Labelled(checkpoint, payload, cfg, *labelled_inputs(args, cfg))


def labelled_inputs(args: argparse.Namespace, cfg: Config) -> tuple[list[Combination], Path, Path]:
    """The rate combinations (`--rates`, else every trained one), the corpus root and the label file
    (`--labels`: a path as given, else relative to the root) of a command that reads a labelled split,
    checked before the slow model build."""
    from mome.config import absolute_path, combinations, parse_combination
    from mome.errors import UserError

    comp = cfg.model.compression
    rates = getattr(args, "rates", None)
    combos = [parse_combination(r, comp) for r in rates] if rates else combinations(comp)
    if cfg.data.root is None:
        raise UserError("no corpus root: pass --root DIR (the checkpoint's config has no data.root)")
    root = Path(cfg.data.root)
    labels = Path(absolute_path(args.labels) if Path(args.labels).is_file() else absolute_path(args.labels, root))
    if not labels.is_file():
        raise UserError(f"{args.labels}: label file not found (also looked in {root})")
    return combos, root, labels


def parse_splits(text: str) -> dict[str, float]:
    """`train=0.8,val=0.1,test=0.1` -> shares per split (`--splits` of `mome synth` and `mome prepare`)."""
    from mome.errors import UserError

    try:
        out = {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise UserError(f"--splits {text!r}: expected e.g. train=0.8,val=0.1,test=0.1") from None
    if set(out) - {"train", "val", "test"} or abs(sum(out.values()) - 1) > 1e-6 or min(out.values()) < 0:
        raise UserError(f"--splits {text!r}: splits are train/val/test and the shares must sum to 1")
    return out


def add_crop_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the crop and label stages that `mome prepare-lrs` and `mome prepare` share."""
    parser.add_argument("--shard", default="0/1", help="I/N: process clips I, I+N, I+2N... (I from 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--crf", type=int, default=20, help="x264 quality of the crops (lower: larger, closer)")
    parser.add_argument("--detect-size", type=int, default=640, help="detect faces on frames downscaled to this")
    parser.add_argument("--cnn-fallback", action="store_true", help="also try dlib's CNN detector (slow)")
    parser.add_argument("--labels-only", action="store_true", help="only rebuild labels and report from markers")
    parser.add_argument("--redo-skipped", action="store_true", help="process skipped clips again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard I/N` -> (I, N), checked."""
    from mome.errors import UserError

    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 0/8") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text!r}: expected 0 <= I < N")
    return index, count


def print_prepare_report(report: dict, out: str | Path) -> None:
    """The short summary of a preparation report: this run, the totals per split, what was skipped and why."""
    run_ = report["this_run"]
    if run_["processed"]:
        print(
            f"shard {run_['shard']}: {run_['processed']} clips, {run_['frames']} frames in {run_['seconds']} s "
            f"({run_['frames_per_second']} frames/s on {run_['workers']} processes)"
        )
    print(
        f"{report['done']}/{report['clips']} clips done ({report['pending']} pending): {report['written']} "
        f"utterances, {report['hours']} h, per split {report['per_split']}"
    )
    if report["skipped"]:
        print(
            f"skipped {len(report['skipped'])} {report['skipped_reasons']} (see {Path(out) / 'meta' / 'report.json'}):"
        )
        for item in report["skipped"][:10]:
            reason, detail = item["reason"], item["detail"]
            print(f"  {item['rel_path']}: {detail if detail.startswith(reason) else f'{reason}: {detail}'}")
        if len(report["skipped"]) > 10:
            print(f"  ... and {len(report['skipped']) - 10} more")
