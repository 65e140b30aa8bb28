"""What `mome reproduce` runs: the methods it compares (the paper's MoME, its ablations and the baselines), its
options and the (method, seed) jobs, shared by the runner (`mome.workflows.reproduce`) and its report
(`mome.workflows.reproduce_report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mome.config import Override
from mome.errors import UserError
from mome.workflows.pipeline import Workspace

Family = Literal["mome", "mtsk", "llama-avsr", "asr"]


@dataclass(frozen=True)
class Method:
    """One row of the comparison: the preset's model with `overrides`."""

    key: str
    """Run folder prefix (`<out>/runs/<key>-s<seed>`)."""
    label: str
    family: Family
    overrides: tuple[Override, ...] = ()
    task: Literal["avsr", "asr"] = "avsr"
    every_seed: bool = False
    """Trained at every seed of `--seeds` (the others at the first seed only)."""
    ablation: bool = False
    """No claim rests on it: trained after every run the claims need."""

    def granularities(self, combinations: int) -> int:
        """Rate combinations it trains on at each step and is evaluated at (its cost, for the time estimate)."""
        if self.family == "llama-avsr":
            return 1
        return 2 if self.task == "asr" else combinations


def _mome(routed: int, top_k: int, shared: int, bottleneck: int) -> tuple[Override, ...]:
    m = "model.adapter.mome"
    return (
        (f"{m}.num_routed_experts", routed),
        (f"{m}.top_k", top_k),
        (f"{m}.num_shared_experts", shared),
        (f"{m}.bottleneck", bottleneck),
    )


def _single_rate(audio: int, video: int) -> tuple[Override, ...]:
    return (
        ("model.adapter.kind", "lora"),
        ("model.compression.audio_rates", [audio]),
        ("model.compression.video_rates", [video]),
    )


# The preset (`demo`) is MoME-23/4 with 1 shared expert, bottleneck 12, parallel to attention. The ablation
# shapes are the paper's Table 3 rows (1 expert of width 48; 4 experts of width 24, top-2, 1 shared). At the demo's
# width the preset has more active adapter parameters than Llama-MTSK's LoRA (the paper's size reverses that), so
# `mome-small` keeps the 23 routed experts and the shared one at top-2 and bottleneck 4: fewer active parameters
# than every MTSK variant at this width, where claim 1 can be tested as stated.
METHODS: tuple[Method, ...] = (
    Method("mome-mhsa", "MoME-23/4-MHSA", "mome", every_seed=True),
    Method("mtsk-ms", "Llama-MTSK MS", "mtsk", (("model.adapter.kind", "mtsk-ms"),), every_seed=True),
    Method(
        "mome-small",
        "MoME-23/2-MHSA, bottleneck 4, 1 shared",
        "mome",
        _mome(23, 2, 1, 4),
        every_seed=True,
    ),
    Method("asr", "MoME-23/4-MHSA, audio only (ASR)", "asr", task="asr"),
    Method(
        "mome-mhsa-pergran",
        "MoME-23/4-MHSA, a router per granularity",
        "mome",
        (("model.adapter.mome.shared_router", False),),
        every_seed=True,
    ),
    Method("llama-avsr-a4-v2", "Llama-AVSR (4,2)", "llama-avsr", _single_rate(4, 2)),
    Method("llama-avsr-a16-v5", "Llama-AVSR (16,5)", "llama-avsr", _single_rate(16, 5)),
    Method("mtsk-ss", "Llama-MTSK SS", "mtsk", (("model.adapter.kind", "mtsk-ss"),), every_seed=True),
    Method("mtsk-mss", "Llama-MTSK MSS", "mtsk", (("model.adapter.kind", "mtsk-mss"),), every_seed=True),
    Method("mome-ffn", "MoME-23/4-FFN", "mome", (("model.adapter.mome.placement", "ffn"),), ablation=True),
    Method("mome-layer", "MoME-23/4-LAYER", "mome", (("model.adapter.mome.placement", "layer"),), ablation=True),
    Method(
        "mome-mhsa-noshared",
        "MoME-23/4-MHSA, no shared expert",
        "mome",
        (("model.adapter.mome.num_shared_experts", 0),),
        ablation=True,
    ),
    Method(
        "mome-lb-pooled",
        "MoME-23/4-MHSA, load balance pooled over layers (the authors' form)",
        "mome",
        (("model.adapter.mome.load_balance", "pooled"),),
        ablation=True,
    ),
    Method("mome-1-1", "MoME-1/1-MHSA (1 expert, width 48)", "mome", _mome(1, 1, 0, 48), ablation=True),
    Method("mome-4-2", "MoME-4/2-MHSA (width 24, 1 shared)", "mome", _mome(4, 2, 1, 24), ablation=True),
)
"""The runs every claim needs come first (`jobs`: at every seed), so a stopped reproduction has them."""
METHOD_KEYS: tuple[str, ...] = tuple(m.key for m in METHODS)

PAPER_PRESET = "paper-mome-23-4-mhsa"
"""The paper-size model (Llama 3.2-3B, Whisper medium, AV-HuBERT Large) the same overrides are counted on."""

NO_FLAG = ("seed", "grid_fraction", "train_speakers", "snrs")
"""`ReproduceOptions` fields without a command-line flag (`mome reproduce` keeps the demo's workspace there)."""

QUICK = {"utterances": 60, "lip_steps": 4, "steps": 4, "eval_limit": 4, "plateau_every": 2, "min_steps": 0}
"""`--quick`: the same code with tiny steps, a tiny corpus and a few test utterances (minutes, not an hour)."""


@dataclass
class ReproduceOptions(Workspace):
    out: Path = Path("reproduce_out")
    snrs: list[float | None] = field(default_factory=lambda: [None, 0.0])
    steps: int = 2000
    """The cap: the most training steps of a run, and the span of every run's learning-rate schedule (cosine).
    Long enough for the demo model to read the letters, which need well over 1,000 steps (docs/experiments.md,
    section 13)."""
    plateau_every: int = 100
    """Period (steps) of the validation-WER check: each run stops once the best WER of its last quarter of steps is
    not at least 1 point below the best before it (`train.plateau`; `train.plateau.min_gain` / `window` change it)."""
    min_steps: int = 800
    """No plateau stop before this step: at 400 steps no variant reads yet, and the WER halves by 800
    (docs/experiments.md, section 13), so an earlier stop would compare how fast the grammar is learned."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Training seeds (on the command line: 0,1,2) of the methods with `every_seed`, the runs the claims compare
    (MoME-MHSA, its small and per-granularity-router variants, MTSK MS/SS/MSS); every other method: the first."""
    methods: list[str] | None = None
    """Keys of the methods to train (on the command line: mome-mhsa,mtsk-ms), e.g. the runs the claims compare
    without the ablations; None (the default): every one. A claim whose runs were not trained is inconclusive."""
    quick: bool = False
    """The same code with tiny steps and data (`QUICK`, under the options given), in minutes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [key for key in self.methods or () if key not in METHOD_KEYS]
        if unknown:
            raise UserError(f"unknown method(s) {', '.join(unknown)}; expected some of {', '.join(METHOD_KEYS)}")

    def plateau_overrides(self) -> list[Override]:
        """The plateau rule of every run; overrides of `train.plateau.min_gain` or `window` change the rest."""
        return [("train.plateau.every_steps", self.plateau_every), ("train.plateau.min_steps", self.min_steps)]


@dataclass(frozen=True)
class Job:
    method: Method
    seed: int

    @property
    def run(self) -> str:
        return f"{self.method.key}-s{self.seed}"


def jobs(opts: ReproduceOptions) -> list[Job]:
    """Every (method, seed) to train, in order (of the chosen `methods`): the methods the claims rest on at the
    first seed, then the extra seeds, then the ablations."""
    chosen = [m for m in METHODS if opts.methods is None or m.key in opts.methods]
    first = [Job(m, opts.seeds[0]) for m in chosen if not m.ablation]
    extra = [Job(m, s) for s in opts.seeds[1:] for m in chosen if m.every_seed]
    ablations = [Job(m, opts.seeds[0]) for m in chosen if m.ablation]
    return first + extra + ablations
