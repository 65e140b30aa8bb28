"""An export (`mome export RUN OUT`, `runs.load.export_run`): a trained model as a self-contained folder to share.

    OUT/adapter.safetensors   the trainable weights only (projectors and adapters), no pickle
    OUT/config.yaml           the resolved config of the run
    OUT/base_models.json      the frozen models it needs, with the sha256 of each file (`mome.runs.base_models`)
    OUT/README.md             a model card: base models, rates, adapter, training data and steps, evaluations
    OUT/calibration.json      the cascade's threshold, when the run was calibrated (`mome calibrate`)
    OUT/<file>.sha256         the checksum of adapter.safetensors, config.yaml and base_models.json

Every command that takes a run takes an export too (`mome eval OUT`, `mome transcribe OUT`, `mome.load(OUT)`):
`read_export` turns it into the payload a checkpoint gives. As for checkpoints, each file is verified against
its `.sha256` (a changed byte or a truncated file is one line naming it; an export written before checksums
loads unverified), and loading checks the base models first: an export without base_models.json is refused
unless the base-model check is turned off explicitly (`--no-base-model-check`, `mome.runs.base_models`). An export
is never written into a run directory, where it would shadow the run's newest checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from mome.config import Config, combination_key, combinations, config_from_dict
from mome.errors import UserError
from mome.io import atomic_write_text
from mome.runs import CALIBRATION_FILE
from mome.runs.base_models import MISSING_HINT, base_model_check, fingerprints
from mome.runs.checksums import verify_checksum, write_checked

WEIGHTS, CONFIG, BASE_MODELS, CARD = "adapter.safetensors", "config.yaml", "base_models.json", "README.md"
FORMAT = "mome-export-1"
CHECKED = (WEIGHTS, CONFIG, BASE_MODELS)
"""The files that define the model, each with a `.sha256` beside it."""


def is_export(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS).is_file() and (path / CONFIG).is_file()


def read_export(path: Path) -> dict[str, Any]:
    """An export as a checkpoint payload (`runs.checkpoint.read_checkpoint` returns the same keys), each
    file verified against its checksum."""
    if not (path / BASE_MODELS).is_file():
        if base_model_check():
            raise UserError(
                f"{path}: {BASE_MODELS} is missing, so the base models these adapters need cannot be "
                f"checked; restore it (or export the run again), {MISSING_HINT}"
            )
        print(f"mome: warning: {path}: no {BASE_MODELS}; loading without the base-model check", file=sys.stderr)
    for name in CHECKED:
        if (path / name).is_file():
            verify_checksum(path / name, "export file")
    try:
        config = yaml.safe_load((path / CONFIG).read_text())
        weights = load_file(str(path / WEIGHTS))
        base = json.loads((path / BASE_MODELS).read_text()) if (path / BASE_MODELS).is_file() else {}
    except (OSError, ValueError, yaml.YAMLError, SafetensorError) as err:
        raise UserError(f"{path}: not a readable mome export ({type(err).__name__}: {err})".splitlines()[0]) from None
    return {
        "format": FORMAT,
        "config": config,
        "model": weights,
        "train_state": {},
        "base_models": base,
        "path": str(path / WEIGHTS),
    }


def refuse_run_directory(out: Path, run: Path) -> None:
    """An export inside a run directory would shadow the run's newest checkpoint (a folder that is both is
    read as the export): refuse it in one line."""
    target, run = out.resolve(), run.resolve()
    if target == run or target.is_relative_to(run / "checkpoints") or (target / "checkpoints").is_dir():
        raise UserError(
            f"{out}: a run directory; an export there would stand for the run instead of its newest checkpoint: "
            "export into a folder of its own (e.g. shared/)"
        )


def write_export(out: Path, payload: dict[str, Any], run_dir: Path) -> Path:
    """Write the export of a checkpoint `payload` of `run_dir` into `out`; returns the model card's path."""
    cfg = config_from_dict(payload["config"])
    base = payload.get("base_models") or {}
    if not base:
        base = fingerprints(cfg.model)  # a checkpoint from before fingerprints: the models its config names now
    out.mkdir(parents=True, exist_ok=True)
    weights = save({k: v.contiguous() for k, v in payload["model"].items()}, metadata={"format": FORMAT})
    write_checked(out / WEIGHTS, weights)
    write_checked(out / CONFIG, yaml.safe_dump(payload["config"], sort_keys=False).encode())
    write_checked(out / BASE_MODELS, (json.dumps(base, indent=2) + "\n").encode())
    calibration = run_dir / CALIBRATION_FILE
    if calibration.is_file():  # the cascade's threshold travels with the model (`budget="auto"`)
        write_checked(out / CALIBRATION_FILE, calibration.read_bytes())
    step = (payload.get("train_state") or {}).get("progress", {}).get("step")
    return atomic_write_text(out / CARD, model_card(cfg, base, step, run_dir))


def model_card(cfg: Config, base: dict[str, Any], step: int | None, run: Path) -> str:
    """What the model is, what it needs and how well it did: the README of an export."""
    m = cfg.model
    adapter = m.adapter.kind + (
        f" {m.adapter.mome.num_routed_experts}/{m.adapter.mome.top_k}, "
        f"{m.adapter.mome.num_shared_experts} shared, bottleneck {m.adapter.mome.bottleneck}, "
        f"{m.adapter.mome.placement}"
        if m.adapter.kind == "mome"
        else ""
    )
    lines = [
        f"# {cfg.name}",
        "",
        "A MoME / Matryoshka AVSR model trained with mome. Only the trainable weights are here "
        f"(`{WEIGHTS}`); the frozen base models below must be on the machine that loads it, and loading checks "
        f"their files against the hashes in `{BASE_MODELS}`.",
        "",
        "```python",
        "import mome",
        'model = mome.load("THIS_FOLDER")  # add overrides such as model.llm.path=DIR if the base models moved',
        'print(model.transcribe(video="clip.mp4").text)',
        "```",
        "",
        f"- task: {m.compression.task}; rate combinations: "
        + ", ".join(combination_key(c) for c in combinations(m.compression)),
        f"- adapter: {adapter}",
        f"- training: {step if step is not None else '?'} steps on `{cfg.data.root}` (labels {cfg.data.train_labels}), "
        f"lr {cfg.train.lr}, seed {cfg.train.seed}",
        "",
        "## Base models",
        "",
        "| part | path at training | files (sha256) |",
        "|---|---|---|",
    ]
    for name, info in base.items():
        files = "<br>".join(f"{f}: `{h[:16]}`" for f, h in list(info["files"].items())[:8])
        more = f"<br>... {len(info['files']) - 8} more" if len(info["files"]) > 8 else ""
        lines.append(f"| {name} | `{info['path']}` | {files}{more} |")
    evaluations = sorted((run / "eval").glob("*/results.md")) if (run / "eval").is_dir() else []
    if evaluations:
        lines += ["", "## Evaluations", ""]
        for path in evaluations:
            lines += [path.read_text().replace("\n# ", "\n### ").replace("\n## ", "\n#### ").lstrip("# "), ""]
    return "\n".join(lines) + "\n"
