"""Weight decay by role: biases and norm gains are never decayed, whatever their shape; weights always are."""

from __future__ import annotations

import torch
from torch import nn

from mome.config import TrainConfig
from mome.models.avsr import AVSRModel
from mome.training import optim
from mome.training.optim import build_optimizer, projector_parameters
from mome.training.pretrain_video import LipPretrainModel
from tiny import tiny_model_config


def _groups(model: nn.Module) -> tuple[set[str], set[str]]:
    """(decayed, not decayed) parameter names of the optimiser `build_optimizer` makes for `model`."""
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    no_decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    return decay, no_decay


def _norm_parameters(model: nn.Module, types: tuple[type, ...]) -> set[str]:
    return {
        f"{m}.{n}"
        for m, module in model.named_modules()
        if isinstance(module, types)
        for n, _ in module.named_parameters()
    }


def test_mome_biases_and_layer_norms_take_no_decay_and_every_weight_matrix_does() -> None:
    model = AVSRModel.from_config(tiny_model_config("mome"), audio_dim=12, video_dim=10)
    decay, no_decay = _groups(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decay | no_decay == trainable and not decay & no_decay

    biases = {n for n in trainable if n.endswith("bias")}
    norms = _norm_parameters(model, (nn.LayerNorm,)) & trainable
    assert {"adapters.0.down_bias", "adapters.0.up_bias"} <= biases  # MoME's stacked biases are 2-D ...
    assert model.get_parameter("adapters.0.down_bias").dim() == 2
    assert "audio_projectors.layers.r4.3.weight" in norms  # ... and the projector LayerNorm gain is 1-D
    assert no_decay == biases | norms

    assert {"adapters.0.down", "adapters.0.up", "adapters.0.router", "video_projectors.layers.r2.0.weight"} <= decay
    assert all(model.get_parameter(n).dim() >= 2 for n in decay)


def test_lip_encoder_pretraining_decays_kernels_but_not_batch_norms_prelus_or_biases() -> None:
    model = LipPretrainModel("tiny", "both")
    decay, no_decay = _groups(model)
    elementwise = _norm_parameters(model, (nn.LayerNorm, nn.BatchNorm2d, nn.BatchNorm3d, nn.PReLU))
    biases = {n for n, _ in model.named_parameters() if n.endswith("bias")}
    assert "encoder.feature_extractor_video.resnet.frontend3D.2.weight" in elementwise  # a PReLU slope
    assert no_decay == elementwise | biases
    # Every bias here is 1-D, so the groups are those of the old ndim rule: pretraining is unchanged.
    assert no_decay == {n for n, p in model.named_parameters() if p.dim() < 2}
    assert "viseme_head.weight" in decay and "encoder.feature_extractor_video.resnet.frontend3D.0.weight" in decay


def test_projector_lr_scale_sets_the_projectors_rate_and_scale_one_keeps_two_groups() -> None:
    model = AVSRModel.from_config(tiny_model_config("mome"), audio_dim=12, video_dim=10)
    projector = {id(p) for p in projector_parameters(model)}
    assert projector and len(projector) < len([p for p in model.parameters() if p.requires_grad])
    plain = build_optimizer(model, TrainConfig(lr=1e-3))
    assert len(plain.param_groups) == 2 and {g["lr"] for g in plain.param_groups} == {1e-3}
    scaled = build_optimizer(model, TrainConfig(lr=1e-3, projector_lr_scale=5))
    for group in scaled.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= projector or not ids & projector  # a group is all projector or none
        assert group["lr"] == (5e-3 if ids <= projector else 1e-3)
    assert sum(len(g["params"]) for g in scaled.param_groups) == sum(len(g["params"]) for g in plain.param_groups)


def test_the_optimiser_is_fused_on_cpu_and_steps_like_the_for_loop_adamw(monkeypatch) -> None:
    """One fused kernel instead of a Python loop over ~40 tensors; the same update as the for-loop AdamW."""
    torch.manual_seed(0)
    model = AVSRModel.from_config(tiny_model_config("mome"), audio_dim=12, video_dim=10)
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    grads = [torch.randn_like(p) for p in params]
    cfg = TrainConfig(lr=1e-3, weight_decay=0.1, projector_lr_scale=5)

    def two_steps() -> tuple[list[torch.Tensor], bool | None]:
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
        optimizer = build_optimizer(model, cfg)
        for _ in range(2):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
        return [p.detach().clone() for p in params], optimizer.defaults["fused"]

    fused, was_fused = two_steps()
    monkeypatch.setattr(optim, "FUSED_DEVICES", ())
    loop, was_loop_fused = two_steps()
    assert was_fused is True and not was_loop_fused
    assert any(not torch.equal(f, s) for f, s in zip(fused, start)), "the step changed nothing"
    for f, r in zip(fused, loop):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-7)
