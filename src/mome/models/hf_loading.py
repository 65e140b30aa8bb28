"""Loading Hugging Face weights quietly, with mome checking what transformers would only print.

transformers prints a LOAD REPORT table, "Loading weights" bars and an embedding-resize notice on every
load. mome drops LLM layers and resizes embeddings on purpose, so that output is noise; instead it checks
the loading info itself and fails on anything it did not ask for (a missing tensor would be random).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from transformers import PretrainedConfig
from transformers.utils import logging as hf_logging

from mome.errors import ConfigError, UserError

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def checked_arch(config_class: type[PretrainedConfig], arch: Mapping[str, Any], where: str) -> PretrainedConfig:
    """`config_class(**arch)`, refusing a key its schema does not take: transformers keeps an unknown key as a
    loose attribute, so `num_hidden_layer: 2` would silently build the default depth. A key is loose when the
    built config serialises it and a default one does not (legacy keys it converts, e.g. `rope_scaling`, pass)."""
    config = config_class(**arch)
    schema = set(config_class().to_dict()) | set(config_class.attribute_map)
    loose = sorted(k for k in config.to_dict() if k in arch and k not in schema)
    if loose:
        raise ConfigError(f"{where}.{loose[0]}: unknown field of {config_class.__name__} (a typo?)")
    return config


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and progress bars for one call; errors still raise."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def check_loading_info(
    info: dict[str, Iterable], path: str, kept_layers: int | None = None, allowed_missing: Iterable[str] = ()
) -> None:
    """Raise a one-line `UserError` unless the only unexpected tensors are of layers >= `kept_layers` (the
    ones a truncated LLM drops) and nothing is missing but `allowed_missing` (e.g. a tied output head)."""

    def dropped(key: str) -> bool:
        match = _LAYER.search(key)
        return kept_layers is not None and match is not None and int(match.group(1)) >= kept_layers

    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not dropped(k))
    missing = sorted(set(info.get("missing_keys", ())) - set(allowed_missing))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", mismatched)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise UserError(f"{path}: weights {what} for this architecture: {shown}")
