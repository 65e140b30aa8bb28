"""`mome experts RUN --labels FILE`: expert usage of a MoME model (see `mome.analysis.experts`).

Writes experts.json, experts.md and one heatmap per layer (layer_<i>.png) to `--out`
(default `<run>/experts/<labels stem>`) and prints the consistency of the router across granularities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mome.commands import add_trusted_checkpoint, collect_overrides, labelled_inputs, run_trusting


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or run directory (its newest checkpoint)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides, e.g. data.num_workers=0")
    parser.add_argument("--labels", required=True, help="label CSV (a path, or relative to the corpus root)")
    parser.add_argument("--root", help="corpus root, the same as data.root=DIR (default: the checkpoint's)")
    parser.add_argument("--rates", nargs="+", metavar="A,V", help="rate combinations, e.g. 4,2 16,5 (default: all)")
    parser.add_argument("--limit", type=int, help="analyse only the first N utterances")
    parser.add_argument("--out", help="output directory (default: <run>/experts/<labels stem>)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trusted_checkpoint(parser)
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    return run_trusting(args, _run)


def _run(args: argparse.Namespace) -> int:
    from mome.analysis.experts import expert_usage, has_router, write_outputs
    from mome.commands.eval import default_out
    from mome.errors import UserError
    from mome.training.checkpoint import checkpoint_config, load_checkpoint, model_from_payload, resolve_checkpoint

    collect_overrides(args, ("rates",))
    if args.root is not None:
        args.overrides.append(f"data.root={args.root}")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    checkpoint = resolve_checkpoint(args.checkpoint)
    payload = load_checkpoint(checkpoint)
    cfg = checkpoint_config(payload, args.overrides)
    if not has_router(cfg.model):
        raise UserError(f"{checkpoint}: adapter {cfg.model.adapter.kind!r} has no router; expert usage needs MoME")
    combos, root, labels = labelled_inputs(args, cfg)

    model, cfg = model_from_payload(payload, args.overrides, device=args.device)
    result = expert_usage(model, cfg, labels, root, combos, args.limit, progress=not args.quiet)
    result.update(checkpoint=str(checkpoint), labels=str(labels), shared_router=cfg.model.adapter.mome.shared_router)
    out = Path(args.out) if args.out else default_out(checkpoint, labels, "experts")
    write_outputs(result, out, f"{cfg.name} on {labels.name}")
    for modality, v in result["consistency_mean"].items():
        print(f"{modality}: consistency {v['score']:.3f} across granularities (chance {v['chance']:.3f})")
    print(f"wrote {out}/experts.json, experts.md, layer_*.png")
    return 0
