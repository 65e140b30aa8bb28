"""`train.precision` / `decode.precision`: `auto` follows the hardware (detection replaced here, never this
machine's), explicit values pass through, a bf16 training step agrees with fp32, `mome train` prints and saves
its choice, and a resume treats a change of precision as `recipe.resume_precision` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState

import mome.precision as precision_module
from mome.cli import main
from mome.config import load_config
from mome.errors import UserError
from mome.precision import Resolved, autocast, resolve_precision
from mome.runs.load import load_checkpoint
from mome.training.engine import batch_loader
from mome.training.recipe import Trainer, record_precision, resume_precision, train

X86 = "processor\t: 0\nmodel name\t: Test x86 CPU\nflags\t\t: fpu sse2 avx avx2 fma {extra}\n\nprocessor\t: 1\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd {extra}\nCPU part\t: 0xd40\n"
NO_BF16 = X86.format(extra="")
FAST = [
    "data.max_frames=120",
    "data.num_workers=0",
    "train.num_threads=1",
    "train.val_max_batches=1",
    "train.log_every_steps=1",
    "train.save_every_steps=1",
]


@pytest.fixture
def cpuinfo(monkeypatch):
    """Set the /proc/cpuinfo text that the detection reads."""

    def set_text(text: str) -> None:
        monkeypatch.setattr(precision_module, "read_cpuinfo", lambda: text)

    return set_text


@pytest.fixture
def fresh_accelerate():
    """Accelerate keeps one mixed precision per process and refuses another; these tests change it, so each
    starts and leaves with a fresh state (the process group, if any, is kept)."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


# ------------------------------------------------------------------------------------------ resolution
@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bf16_on_an_x86_cpu_with_native_bf16(cpuinfo, flag: str) -> None:
    cpuinfo(X86.format(extra=f"avx512f {flag}"))
    resolved = resolve_precision("auto", "cpu")
    assert (resolved.precision, resolved.hardware) == ("bf16", "Test x86 CPU")
    assert resolved.reason.startswith("auto: ") and flag in resolved.reason


@pytest.mark.parametrize(
    "text",
    [NO_BF16, X86.format(extra="avx512f avx512bw avx512_vnni"), ARM.format(extra="sve"), ""],
    ids=["avx2", "avx512-without-bf16", "arm-without-bf16", "no-cpuinfo"],
)
def test_auto_is_fp32_on_a_cpu_without_native_bf16(cpuinfo, text: str) -> None:
    cpuinfo(text)
    resolved = resolve_precision("auto", "cpu")
    assert resolved.precision == "fp32" and resolved.reason.startswith("auto: ")


def test_the_reason_is_a_sentence_that_names_what_is_missing(cpuinfo) -> None:
    cpuinfo(NO_BF16)
    reason = resolve_precision("auto", "cpu").reason
    assert reason == "auto: this CPU has no AVX512-BF16 or AMX, bf16 matmul would be emulated"


@pytest.mark.parametrize("speedup", [0.55, 1.2])
def test_auto_is_fp32_where_the_flags_claim_bf16_but_it_measures_slow(cpuinfo, monkeypatch, speedup) -> None:
    """A VM may show avx512_bf16 and hide AMX: bf16 matmul then runs at about half of fp32's speed."""
    cpuinfo(X86.format(extra="avx512f avx512_bf16"))
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda: speedup)
    resolved = resolve_precision("auto", "cpu")
    assert resolved.precision == "fp32"
    assert (
        resolved.reason
        == f"auto: this CPU has avx512_bf16, but a bf16 matmul runs {speedup:.2f}x as fast as fp32 here (measured)"
    )
    assert resolve_precision("bf16", "cpu").reason.startswith("as requested; slow here: this CPU has avx512_bf16")


def test_the_bf16_speedup_is_a_measured_ratio_that_leaves_the_random_state_alone() -> None:
    state = torch.get_rng_state()
    speedups = [precision_module.measure_cpu_bf16_speedup() for _ in range(2)]
    assert all(0 < x < 100 for x in speedups)  # fp32 time / bf16 time: finite and positive on any CPU
    assert torch.equal(torch.get_rng_state(), state)  # a resolution never shifts a seeded run's draws


def test_auto_is_bf16_on_an_arm_cpu_with_bf16(cpuinfo) -> None:
    cpuinfo(ARM.format(extra="sve bf16 i8mm"))
    assert resolve_precision("auto", "cpu").precision == "bf16"


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_native_bf16_support(monkeypatch, native: bool, expected: str) -> None:
    asked = {}

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked["including_emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    resolved = resolve_precision("auto", "cuda")
    assert (resolved.precision, resolved.device, resolved.hardware) == (expected, "cuda", "Test GPU")
    assert asked == {"including_emulation": False}  # an emulated bf16 (pre-Ampere) is not native


@pytest.mark.parametrize("requested", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("flags", ["", "avx512_bf16"])
def test_explicit_values_pass_through(cpuinfo, requested: str, flags: str) -> None:
    cpuinfo(X86.format(extra=flags))
    resolved = resolve_precision(requested, "cpu")
    assert (resolved.requested, resolved.precision) == (requested, requested)
    assert resolved.reason.startswith("as requested")
    # an explicit bf16 where it is emulated says so
    assert ("slow here" in resolved.reason) == (requested == "bf16" and not flags)


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", "cpu")


def test_autocast_is_on_for_bf16_and_off_for_fp32() -> None:
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")


# ------------------------------------------------------------------------------------------ training
def _trainer(root: Path, out: Path, *extra: str) -> Trainer:
    cfg = load_config("tiny", [f"data.root={root}", f"train.output_dir={out}", *FAST, *extra])
    return Trainer(cfg, resume=False).setup()


def _first_step_loss(trainer: Trainer) -> float:
    trainer.sampler.set_epoch(0)
    trainer.train_set.set_epoch(0)
    batch = next(iter(batch_loader(trainer.train_set, trainer.sampler, trainer.cfg.data.loader_workers)))["batch"]
    return trainer.train_step(batch)["loss"]


def test_a_bf16_step_agrees_with_the_fp32_step(train_corpus, tmp_path, cpuinfo, fresh_accelerate) -> None:
    """The same model and batch (same seed) under `auto`, once where the detection finds native bf16 and once
    where it does not. bf16 keeps 8 significant bits, so each matmul input is off by up to 2^-9 (0.2%); on this
    wide random LLM (confident, input-dependent logits) the losses differed by 0.2% when written (0.6% at most
    for one granularity). The 2% tolerance leaves room for that rounding and still fails on a broken cast
    (overflow, a NaN, a loss computed from the wrong tensors); the losses must also differ, or autocast never ran."""
    wide = "model.llm.arch.initializer_range=0.5"  # a random LLM with wide weights makes confident predictions
    losses, mixed, dtypes = {}, {}, {}
    for flags in ("", "avx512_bf16"):
        cpuinfo(X86.format(extra=flags))
        AcceleratorState._reset_state()
        trainer = _trainer(train_corpus, tmp_path / f"run-{flags or 'none'}", "train.precision=auto", wide)
        losses[trainer.precision.precision] = _first_step_loss(trainer)
        mixed[trainer.precision.precision] = trainer.accel.mixed_precision
        dtypes[trainer.precision.precision] = trainer.model.llm.get_input_embeddings().weight.dtype
    assert mixed == {"fp32": "no", "bf16": "bf16"}  # Accelerate runs what `auto` resolved to
    assert dtypes == {"fp32": torch.float32, "bf16": torch.bfloat16}  # the bf16 step read a bf16-stored LLM
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    assert losses["bf16"] != losses["fp32"], "identical losses: the bf16 step did not run under bf16 autocast"


def test_a_bf16_run_stores_the_frozen_llm_in_bf16_and_keeps_what_trains_in_fp32(
    train_corpus, tmp_path, fresh_accelerate
) -> None:
    """`train.precision=bf16` (what `auto` gives where bf16 is native; forced here): the frozen LLM is cast once
    instead of by autocast at every call, while the trainable weights, their optimiser state and the
    checkpoint (trainable weights only) stay fp32."""
    trainer = _trainer(train_corpus, tmp_path / "run", "train.precision=bf16")
    assert {p.dtype for p in trainer.model.llm.parameters()} == {torch.bfloat16}
    assert trainer.model.llm.config._attn_implementation == "eager"  # a CPU's bf16 SDPA backward is slow
    trainable = trainer.model.trainable_parameters()
    assert trainable and {p.dtype for p in trainable} == {torch.float32}
    assert torch.isfinite(torch.tensor(_first_step_loss(trainer)))
    moments = [t for state in trainer.optimizer.state.values() for t in state.values() if t.dim() > 0]
    assert moments and {t.dtype for t in moments} == {torch.float32}
    weights = load_checkpoint(trainer.save())["model"]
    assert set(weights) == {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_an_fp32_run_keeps_the_llm_as_built(train_corpus, tmp_path, fresh_accelerate) -> None:
    """fp32 steps keep fp32 weights and the model's own (SDPA) attention, the faster one in fp32."""
    trainer = _trainer(train_corpus, tmp_path / "run", "train.precision=fp32")
    assert {p.dtype for p in trainer.model.llm.parameters()} == {torch.float32}
    assert trainer.model.llm.config._attn_implementation == "sdpa"


def test_fp16_training_on_a_cpu_is_refused(train_corpus, tmp_path, fresh_accelerate) -> None:
    """Accelerate applies no fp16 autocast on CPUs: the run would be fp32 while precision.json said fp16."""
    with pytest.raises(UserError, match=r"train\.precision: fp16 needs a CUDA GPU"):
        _trainer(train_corpus, tmp_path / "run", "train.precision=fp16")


def test_mome_train_prints_and_saves_its_choice(train_corpus, tmp_path, monkeypatch, cpuinfo, capsys) -> None:
    """`mome train` from a working directory with relative paths, as a user types it."""
    monkeypatch.chdir(tmp_path)
    Path("corpus").symlink_to(train_corpus)
    cpuinfo(NO_BF16)
    args = [
        "train",
        "tiny",
        "data.root=corpus",
        "train.output_dir=runs/tiny",
        "train.max_steps=1",
        "train.precision=auto",
        *FAST,
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    reason = "auto: this CPU has no AVX512-BF16 or AMX, bf16 matmul would be emulated"
    assert out.count(f"train: precision fp32 ({reason})") == 1
    record = json.loads(Path("runs/tiny/precision.json").read_text())
    assert record == {
        "requested": "auto",
        "precision": "fp32",
        "reason": reason,
        "device": "cpu",
        "hardware": "Test x86 CPU",
        "from_step": 0,
        "earlier": [],
    }
    assert yaml.safe_load(Path("runs/tiny/config.yaml").read_text())["train"]["precision"] == "auto"
    assert load_checkpoint(Path("runs/tiny"))["train_state"]["precision"] == "fp32"


def test_resume_on_other_hardware_continues_and_records_both(
    train_corpus, tmp_path, cpuinfo, capsys, fresh_accelerate
) -> None:
    """`auto` resolved again after a move to a machine with native bf16: the run continues (fp32 weights and
    optimiser state either way), says so once, and precision.json keeps the fp32 span."""
    out = tmp_path / "run"
    overrides = [f"data.root={train_corpus}", f"train.output_dir={out}", "train.precision=auto", *FAST]
    cpuinfo(NO_BF16)
    train(load_config("tiny", [*overrides, "train.max_steps=1"]))
    AcceleratorState._reset_state()
    cpuinfo(X86.format(extra="avx512_bf16"))
    capsys.readouterr()
    train(load_config("tiny", [*overrides, "train.max_steps=2"]))
    printed = capsys.readouterr().out
    assert "precision: the checkpoint's steps ran in fp32, this run continues in bf16" in printed
    record = json.loads((out / "precision.json").read_text())
    assert (record["precision"], record["from_step"]) == ("bf16", 1)
    assert [(e["precision"], e["from_step"]) for e in record["earlier"]] == [("fp32", 0)]
    assert load_checkpoint(out)["train_state"]["precision"] == "bf16"


def test_an_fp32_run_resumes_under_auto_where_auto_is_fp32(
    train_corpus, tmp_path, cpuinfo, capsys, fresh_accelerate
) -> None:
    """A run saved with `fp32` (the old default) resumed with `auto` computes the same steps on a CPU without
    native bf16: applied and listed. Where `auto` would be bf16, the change is refused with the way out."""
    out = tmp_path / "run"
    overrides = [f"data.root={train_corpus}", f"train.output_dir={out}", *FAST]
    train(load_config("tiny", [*overrides, "train.max_steps=1", "train.precision=fp32"]))
    AcceleratorState._reset_state()
    cpuinfo(X86.format(extra="amx_bf16"))
    refusal = r"train\.precision: fp32 -> auto \(resolves to bf16 here, but the run trained in fp32: pass train\.precision=fp32\)"
    with pytest.raises(UserError, match=refusal):
        train(load_config("tiny", [*overrides, "train.max_steps=2", "train.precision=auto"]))
    AcceleratorState._reset_state()
    cpuinfo(NO_BF16)
    capsys.readouterr()
    train(load_config("tiny", [*overrides, "train.max_steps=2", "train.precision=auto"]))
    assert "applied train.max_steps: 1 -> 2, train.precision: fp32 -> auto" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ pure helpers
def _resolved(precision: str, requested: str = "auto") -> Resolved:
    return Resolved(requested, precision, f"{requested}: test", "cpu", "Test CPU")


def test_resume_precision_rules() -> None:
    change = "train.precision: bf16 -> auto"
    # written differently, resolving to what the run trained in: applied
    assert resume_precision("bf16", _resolved("bf16"), [], [change]) == ([change], [], "")
    # written the same, resolving differently: applied with a note
    applied, refused, note = resume_precision("bf16", _resolved("fp32"), [], [])
    assert (applied, refused) == ([], []) and "ran in bf16, this run continues in fp32" in note
    # written differently and resolving differently: refused, with the value that continues the run
    _, refused, _ = resume_precision("bf16", _resolved("fp32"), [], [change, "train.lr: 1 -> 2"])
    assert refused[0].startswith(change) and "pass train.precision=bf16" in refused[0]
    assert refused[1] == "train.lr: 1 -> 2"


def test_record_precision_keeps_the_first_step_of_each_precision(tmp_path) -> None:
    path = tmp_path / "precision.json"
    record_precision(path, _resolved("fp32"), 0)
    record_precision(path, _resolved("fp32"), 5)  # a resume on the same machine: the same span
    record = record_precision(path, _resolved("bf16"), 9)
    assert (record["precision"], record["from_step"]) == ("bf16", 9)
    assert [(e["precision"], e["from_step"]) for e in record["earlier"]] == [("fp32", 0)]
    assert json.loads(path.read_text()) == record
