"""`mome experts RUN --labels FILE`: expert usage of a MoME model (see `mome.analysis.experts`).

Writes experts.json, experts.md and one heatmap per layer (layer_<i>.png) to `--out`
(default `<run>/experts/<labels stem>`) and prints the consistency of the router across granularities.
`--untrained`: the step-0 control, the same analysis of the checkpoint's config freshly initialised
(default `--out`: `<run>/experts/<labels stem>-step0`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mome.commands import add_labelled_arguments, open_labelled, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_labelled_arguments(parser)
    parser.add_argument("--out", help="output directory (default: <run>/experts/<labels stem>[-step0])")
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="step-0 control: analyse the checkpoint's config freshly initialised, not its weights",
    )


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.analysis.experts import expert_usage, has_router, untrained_model, write_outputs
    from mome.commands.eval import default_out
    from mome.errors import UserError
    from mome.runs.load import model_from_payload

    split = open_labelled(args)
    if not has_router(split.cfg.model):
        raise UserError(
            f"{split.checkpoint}: adapter {split.cfg.model.adapter.kind!r} has no router; expert usage needs MoME"
        )
    model, cfg = model_from_payload(split.payload, args.overrides, device=args.device)
    if args.untrained:
        model = untrained_model(cfg, args.device)
    result = expert_usage(model, cfg, split.labels, split.root, split.combos, args.limit, progress=not args.quiet)
    result.update(
        checkpoint=str(split.checkpoint),
        labels=str(split.labels),
        shared_router=cfg.model.adapter.mome.shared_router,
        untrained=args.untrained,
    )
    out = Path(args.out) if args.out else default_out(split.checkpoint, split.labels, "experts")
    if args.untrained and not args.out:
        out = out.with_name(out.name + "-step0")
    untrained = " untrained (step 0)" if args.untrained else ""
    write_outputs(result, out, f"{cfg.name}{untrained} on {split.labels.name}")
    for modality, v in result["consistency_mean"].items():
        print(
            f"{modality}: consistency {v['score']:.3f} across granularities (chance {v['chance']:.3f} within "
            f"utterances, p = {v['p_value']:.3g})"
        )
    print(f"wrote {out}/experts.json, experts.md, layer_*.png")
    return 0
