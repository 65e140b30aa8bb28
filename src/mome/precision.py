"""Which autocast precision fits the hardware: `auto` resolves to bf16 where the device multiplies bf16 natively
and to fp32 elsewhere, because bf16 matmul without hardware support is emulated and far slower than fp32
(docs/experiments.md, section 6). Explicit `fp32`, `bf16` and `fp16` pass through unchanged.

Native bf16: a CUDA GPU for which `torch.cuda.is_bf16_supported(including_emulation=False)` holds (Ampere
and later); a Linux x86 CPU whose /proc/cpuinfo `flags` include `avx512_bf16` or `amx_bf16`, or an aarch64 CPU
whose `Features` include `bf16`, *and* on which a bf16 matmul measures at least `MIN_BF16_SPEEDUP` times faster
than fp32 (`cpu_bf16_speedup`, about 0.1 s once per process): the flags alone misjudge some machines, e.g. a VM
that shows AVX512-BF16 but hides AMX, where bf16 runs at about half of fp32's speed. Anything else (other
devices, a CPU whose features cannot be read) is fp32.

    resolved = resolve_precision(cfg.train.precision, device)    # Resolved("fp32", "auto: this CPU has ...")
    with autocast(resolved.precision, device): ...

Where the compute precision is bf16 the frozen LLM is also stored in bf16 (`AVSRModel.store_frozen`), so that
autocast has nothing to re-cast at each call; trainable weights and optimiser state stay fp32. Decoding
resolves `decode.precision` through `decode_precision`, which also knows that int8 decoding
(`decode.quantize`, `mome.models.quantize`) runs in fp32 on CPUs.
"""

from __future__ import annotations

import contextlib
import functools
import time
import typing
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mome.config import AutoPrecision, DecodeConfig, Precision
from mome.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FEATURE = "bf16"
MIN_BF16_SPEEDUP = 1.5
"""The least bf16-over-fp32 matmul speed-up for which `auto` picks bf16 on a CPU: a training step gains well
under the matmul's gain (docs/experiments.md, section 6)."""

TORCH_DTYPES: dict[Precision, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""`config.Precision` -> torch dtype: the one table (frozen LLM weights, autocast)."""


@dataclass(frozen=True)
class Resolved:
    """A precision choice: what was asked for, what runs, why (one human sentence) and where."""

    requested: AutoPrecision
    precision: Precision
    reason: str
    device: str
    hardware: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        """One line for the console, e.g. `precision fp32 (auto: this CPU has no ...)`."""
        return f"precision {self.precision} ({self.reason})"


@dataclass(frozen=True)
class Support:
    """Whether a device multiplies bf16 natively, its name, and the clause that says so."""

    native: bool
    hardware: str
    why: str


def read_cpuinfo() -> str:
    """/proc/cpuinfo, or "" where there is none (macOS, Windows). A function, so that tests can replace it."""
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(text: str, key: str) -> str | None:
    """The value of the first `key : value` line of /proc/cpuinfo (every core repeats the same lines)."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None


def cpu_support(text: str) -> Support:
    """bf16 support of the CPU that /proc/cpuinfo `text` describes (x86 `flags`, aarch64 `Features`)."""
    name = _cpuinfo_field(text, "model name") or _cpuinfo_field(text, "CPU part") or "unknown CPU"
    flags = _cpuinfo_field(text, "flags")
    if flags is not None:
        found = [f for f in X86_BF16_FLAGS if f in flags.split()]
        if found:
            return Support(True, name, f"this CPU has {' and '.join(found)}, native bf16 matmul")
        return Support(False, name, "this CPU has no AVX512-BF16 or AMX, bf16 matmul would be emulated")
    features = _cpuinfo_field(text, "Features")
    if features is not None:
        if ARM_BF16_FEATURE in features.split():
            return Support(True, name, "this CPU has the Arm BF16 instructions, native bf16 matmul")
        return Support(False, name, "this CPU has no Arm BF16 instructions, bf16 matmul would be emulated")
    return Support(False, name, "this CPU's features cannot be read from /proc/cpuinfo, so fp32 to be safe")


def measure_cpu_bf16_speedup() -> float:
    """fp32 time over bf16 time of one matmul the size of an LLM projection over a packed batch, best of a few
    repeats on this process's threads."""
    g = torch.Generator().manual_seed(0)  # its own generator: measuring leaves the global random state alone
    a, b = torch.randn(512, 576, generator=g), torch.randn(576, 1536, generator=g)

    def best_seconds(x: torch.Tensor, y: torch.Tensor) -> float:
        x @ y  # first call: kernel selection, page faults
        times = []
        for _ in range(5):
            start = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        return best_seconds(a, b) / best_seconds(a.bfloat16(), b.bfloat16())


cpu_bf16_speedup = functools.cache(measure_cpu_bf16_speedup)
"""`measure_cpu_bf16_speedup`, measured once per process."""


def measured_cpu_support(text: str) -> Support:
    """`cpu_support`, with a CPU whose flags claim native bf16 checked by timing (`cpu_bf16_speedup`)."""
    support = cpu_support(text)
    if not support.native:
        return support
    speedup = cpu_bf16_speedup()
    if speedup < MIN_BF16_SPEEDUP:
        why = f"{support.why.split(',')[0]}, but a bf16 matmul runs {speedup:.2f}x as fast as fp32 here (measured)"
        return Support(False, support.hardware, why)
    return Support(True, support.hardware, f"{support.why} ({speedup:.1f}x fp32, measured)")


def cuda_support(device: torch.device) -> Support:
    """bf16 support of a CUDA GPU: native from Ampere on; before, torch emulates it."""
    name = torch.cuda.get_device_name(device)
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return Support(True, name, f"{name} has native bf16")
    return Support(False, name, f"{name} has no native bf16 (before Ampere), bf16 would be emulated")


def device_support(device: torch.device) -> Support:
    if device.type == "cuda":
        return cuda_support(device)
    if device.type == "cpu":
        return measured_cpu_support(read_cpuinfo())
    return Support(False, device.type, f"no bf16 check for {device.type} devices, so fp32 to be safe")


def resolve_precision(requested: AutoPrecision, device: str | torch.device) -> Resolved:
    """`auto` -> bf16 where `device` has native bf16 matmul, else fp32; explicit values pass through (an
    explicit bf16 on a device without native bf16 says that it will be slow)."""
    if requested not in typing.get_args(AutoPrecision):
        raise ValueError(f"unknown precision {requested!r}; expected one of {typing.get_args(AutoPrecision)}")
    device = torch.device(device)
    support = device_support(device)
    if requested == "auto":
        precision: Precision = "bf16" if support.native else "fp32"
        reason = f"auto: {support.why}"
    else:
        precision = requested
        reason = "as requested"
        if requested == "bf16" and not support.native:
            reason += f"; slow here: {support.why}"
    return Resolved(requested, precision, reason, str(device), support.hardware)


def decode_precision(decode: DecodeConfig, device: str | torch.device) -> Resolved:
    """What decoding runs in: `decode.precision` resolved, except that int8 decoding (`decode.quantize`) runs
    in fp32 (`auto` gives fp32; an explicit bf16 / fp16 is refused) and on CPUs only."""
    if decode.quantize == "none":
        return resolve_precision(decode.precision, device)
    if torch.device(device).type != "cpu":
        raise ConfigError(
            f"decode.quantize: {decode.quantize} runs on CPUs only, not on {device}; use "
            "decode.quantize=none there (bf16 weights where the GPU has bf16)"
        )
    decode.check("decode")  # a DecodeConfig made in code has not been checked: int8 with bf16 is refused there
    resolved = resolve_precision(decode.precision, device)
    reason = resolved.reason if resolved.precision == "fp32" else f"{decode.quantize} decoding runs in fp32"
    return Resolved(
        decode.precision, "fp32", f"{reason}; linear layers in {decode.quantize}", resolved.device, resolved.hardware
    )


def autocast(precision: Precision, device: str | torch.device) -> AbstractContextManager:
    """`torch.autocast` to bf16 / fp16 on `device`'s type; nothing for fp32 (the weights' own dtype)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=TORCH_DTYPES[precision])
