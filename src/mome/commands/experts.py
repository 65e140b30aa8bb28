"""`mome experts RUN --labels FILE`: expert usage of a MoME model (see `mome.analysis.experts`).

Writes experts.json, experts.md and one heatmap per layer (layer_<i>.png) to `--out`
(default `<run>/experts/<labels stem>`) and prints the consistency of the router across granularities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mome.commands import add_labelled_arguments, open_labelled, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_labelled_arguments(parser)
    parser.add_argument("--out", help="output directory (default: <run>/experts/<labels stem>)")


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.analysis.experts import expert_usage, has_router, write_outputs
    from mome.commands.eval import default_out
    from mome.errors import UserError
    from mome.training.checkpoint import model_from_payload

    split = open_labelled(args)
    if not has_router(split.cfg.model):
        raise UserError(
            f"{split.checkpoint}: adapter {split.cfg.model.adapter.kind!r} has no router; expert usage needs MoME"
        )
    model, cfg = model_from_payload(split.payload, args.overrides, device=args.device)
    result = expert_usage(model, cfg, split.labels, split.root, split.combos, args.limit, progress=not args.quiet)
    result.update(
        checkpoint=str(split.checkpoint), labels=str(split.labels), shared_router=cfg.model.adapter.mome.shared_router
    )
    out = Path(args.out) if args.out else default_out(split.checkpoint, split.labels, "experts")
    write_outputs(result, out, f"{cfg.name} on {split.labels.name}")
    for modality, v in result["consistency_mean"].items():
        print(f"{modality}: consistency {v['score']:.3f} across granularities (chance {v['chance']:.3f})")
    print(f"wrote {out}/experts.json, experts.md, layer_*.png")
    return 0
