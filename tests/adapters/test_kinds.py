"""Adapter kinds: one registry keyed by the config's kinds; each kind's handle says what trains and what it
adds to the loss, and the model adds exactly that."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mome import adapters
from mome.adapters import ADAPTERS, AdapterHandle, AuxLoss
from mome.adapters.routing import load_balance_pooled
from mome.config import ADAPTER_KINDS, AdapterConfig
from mome.models.avsr import AVSRModel, Features
from tiny import ADAPTER_KINDS as TINY_KINDS
from tiny import tiny_model_config

TEXTS = ["bin blue at f two", "lay red by g nine"]


def _features() -> Features:
    lengths_v = torch.tensor([20, 11])
    return Features(torch.randn(2, 40, 12), 2 * lengths_v, torch.randn(2, 20, 10), lengths_v)


def test_the_registry_is_keyed_by_the_config_kinds() -> None:
    assert set(ADAPTERS) == set(ADAPTER_KINDS)
    with pytest.raises(ValueError, match="unknown adapter kind"):
        adapters.attach_adapters(nn.Module(), AdapterConfig(kind="nope"), 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", TINY_KINDS + ["none"])
def test_the_handle_declares_what_trains(kind: str) -> None:
    model = AVSRModel.from_config(tiny_model_config(kind), audio_dim=12, video_dim=10)
    declared = {id(p) for p in model.adapter_handle.trainable_parameters()}
    trainable = {id(p) for p in model.adapters.parameters() if p.requires_grad}
    assert declared == trainable == {id(p) for p in model.adapters.parameters()}
    assert (len(declared) > 0) == (kind != "none")


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_the_loss_adds_each_declared_aux_term_with_its_weight(kind: str) -> None:
    model = AVSRModel.from_config(tiny_model_config(kind, z_loss_coef=0.5), audio_dim=12, video_dim=10).train()
    out = model(_features(), TEXTS)
    if kind == "mome":
        assert set(out.aux) == {"load_balance", "z_loss"}
        want = out.lm_loss + 0.01 * out.aux["load_balance"] + 0.5 * out.aux["z_loss"]
        torch.testing.assert_close(out.loss, want, rtol=0, atol=0)
    else:  # the LoRA baselines have no auxiliary loss
        assert out.aux == {} and torch.equal(out.loss, out.lm_loss)


def test_the_pooled_load_balance_is_the_one_loss_over_every_layers_tokens() -> None:
    torch.manual_seed(0)
    features = _features()
    values = {}
    for form in ("per-layer", "pooled"):
        torch.manual_seed(1)  # the same weights for both forms
        model = AVSRModel.from_config(tiny_model_config("mome", load_balance=form), audio_dim=12, video_dim=10)
        records = []
        model.adapter_handle.aux_loss_fn = _spy(model.adapter_handle.aux_loss_fn, records)
        values[form] = model.train()(features, TEXTS).aux["load_balance"]
    num_experts = tiny_model_config("mome").adapter.mome.num_routed_experts
    torch.testing.assert_close(values["pooled"], load_balance_pooled(records, num_experts))
    assert len({r.layer for r in records}) > 1 and values["pooled"] != values["per-layer"]


def _spy(fn, records: list):
    def spy(seen):
        records[:] = seen
        return fn(seen)

    return spy


def test_a_new_kind_needs_no_branch_in_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a handle declares (here a constant aux term on a bias-only adapter) is what the model uses."""

    def attach(llm: nn.Module, cfg: AdapterConfig, num_combinations: int) -> AdapterHandle:
        modules = nn.ModuleList(
            [nn.ParameterDict({"trained": nn.Parameter(torch.zeros(3)), "fixed": nn.Parameter(torch.ones(2))})]
        )
        handle = AdapterHandle(modules, aux_loss_fn=lambda records: {"const": AuxLoss(2.0, torch.tensor(0.25))})
        handle.trainable_parameters = lambda: [modules[0]["trained"]]  # type: ignore[method-assign]
        return handle

    monkeypatch.setitem(ADAPTERS, "none", attach)
    model = AVSRModel.from_config(tiny_model_config("none"), audio_dim=12, video_dim=10)
    assert [n for n, p in model.adapters.named_parameters() if p.requires_grad] == ["0.trained"]
    out = model(_features(), TEXTS)
    assert out.aux == {"const": torch.tensor(0.25)}
    torch.testing.assert_close(out.loss, out.lm_loss + 0.5)
