"""Dynamic int8 quantisation of the frozen LLM for decoding on CPUs (`decode.quantize: int8`).

Every `nn.Linear` of the LLM but the MLP's output projections (`KEPT_FP32`), the LM head included, becomes torch's
dynamically quantised Linear: int8 weights per output channel, activations quantised at each call, an int8
matmul (fbgemm on x86, qnnpack on Arm). At batch 1 a generated token reads every weight of the LLM, so weights
four times smaller make a token cheaper.

Why `torch.ao.nn.quantized.dynamic` although torch marks `torch.ao.quantization` deprecated: its successor,
torchao's `quantize_(model, Int8DynamicActivationInt8WeightConfig())`, runs its CPU matmul through
`aten::_int_mm`, which without torch.compile is slower than fp32 on CPUs without VNNI, several times slower
on small layers (docs/benchmarks.md; pytorch/ao#4365 reports the same against torch.ao). The deprecation
warnings are silenced here, in the one place that uses the API; `torch==2.13.0` is pinned.

SmolLM2 ties its LM head to the input embeddings: the head's module is replaced by a quantised one, and the
embedding module keeps its fp32 table, which the sequence builder and `generate` look tokens up in. Hooks
on a replaced Linear (LoRA on q_proj / v_proj) move to its replacement, handles and all; hooks on other
modules (MoME on attention, MLP or the layer) are untouched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from torch import nn

HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
)
"""The hook tables of an `nn.Module`; a handle removes its hook from the very dict it was added to."""


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """torch.ao's deprecation warnings (the module's docstring says why it is used anyway)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"torch\.ao\.quantization")
        warnings.filterwarnings("ignore", category=UserWarning, message=r"torch\.quantize_per_")
        yield


def _move_hooks(old: nn.Module, new: nn.Module) -> None:
    """Give `new` the hook tables of `old` (the same dicts, so that existing handles still remove them)."""
    for name in HOOK_DICTS:
        setattr(new, name, getattr(old, name))


KEPT_FP32 = ("down_proj",)
"""Names of the linear layers left in fp32: the MLP's output projection (Llama, Qwen2, SmolLM2), whose input,
the gated product, carries outlier activations that one int8 scale per tensor flattens (the LLM.int8 finding).
Kept in fp32, the demo model's transcripts stay as close to fp32's as int8 allows, for part of int8's time
saving (docs/experiments.md, section 15)."""


def quantize_int8(llm: nn.Module) -> int:
    """Replace every `nn.Linear` inside `llm` but those named in `KEPT_FP32` by a dynamically quantised int8 one;
    returns how many.

    In place and for inference only: the replacements have no gradients. Modules outside `llm` (projectors,
    adapters) keep their fp32 weights."""
    with _quiet_deprecation():
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig

        count = 0
        for parent in list(llm.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not nn.Linear or name in KEPT_FP32:
                    continue
                child.qconfig = per_channel_dynamic_qconfig
                quantised = DynamicLinear.from_float(child)
                del child.qconfig
                _move_hooks(child, quantised)
                setattr(parent, name, quantised)
                count += 1
    return count
