"""The AV-HuBERT encoder port: shapes, padding, eval freeze, the zero-audio fusion, LoRA, sizes."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mome.errors import ConfigError
from mome.models.avhubert import ARCHS, AVHubertArch, AVHubertEncoder, FrameCTCHead, build_avhubert

H = W = 24  # tiny frames; the trunk ends in an adaptive average pool, so any size >= 16 works


def tiny(**overrides) -> AVHubertEncoder:
    torch.manual_seed(0)
    model = build_avhubert({"name": "tiny", **overrides})
    with torch.no_grad():  # non-trivial BN statistics, so eval vs train mode differ visibly
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def clip(b: int, t: int) -> torch.Tensor:
    return torch.randn(b, t, 1, H, W)


@pytest.mark.parametrize("t", [1, 5, 13])
def test_shapes_one_feature_per_frame(t):
    model = tiny()
    feats, lengths = model(clip(2, t))
    assert feats.shape == (2, t, ARCHS["tiny"].embed_dim)
    assert lengths.tolist() == [t, t]
    assert model(clip(2, t)[:, :, 0])[0].shape == feats.shape  # [B, T, H, W] also accepted


def test_padded_batch_matches_each_clip_alone():
    model = tiny()
    a, b = clip(1, 9), clip(1, 4)
    batch = torch.cat([a, F.pad(b, (0, 0, 0, 0, 0, 0, 0, 5), value=3.0)])  # junk in the padding on purpose
    feats, _ = model(batch, torch.tensor([9, 4]))
    torch.testing.assert_close(feats[0], model(a)[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(feats[1, :4], model(b)[0][0], atol=1e-5, rtol=1e-4)
    assert feats[1, 4:].abs().max() == 0


def test_frozen_encoder_stays_in_eval_mode_inside_a_training_parent():
    model = tiny()
    parent = nn.ModuleDict({"enc": model, "head": nn.Linear(4, 4)}).train()
    assert parent["head"].training and not any(m.training for m in model.modules())
    bn = model.feature_extractor_video.resnet.frontend3D[1]
    before = bn.running_mean.clone()
    x = clip(2, 5)
    out1, out2 = model(x)[0], model(x)[0]
    torch.testing.assert_close(out1, out2)  # no dropout, no LayerDrop
    assert torch.equal(bn.running_mean, before)  # BN statistics untouched
    assert not any(p.requires_grad for p in model.parameters())


def test_trainable_arch_follows_its_parent():
    model = tiny(frozen=False)
    model.train()
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.freeze()
    model.train()
    assert not model.training


def test_missing_audio_is_zero_after_its_front_end_and_goes_through_the_layer_norm():
    model = tiny()
    v = torch.randn(2, model.embed_dim, 6)  # [B, D, T] video front-end output
    got = model.fuse_missing_audio(v)
    # Closed form of LN over [0, v]: statistics over 2D channels, the zero half included.
    x = v.transpose(1, 2)
    mu = x.sum(-1, keepdim=True) / (2 * model.embed_dim)
    var = (x * x).sum(-1, keepdim=True) / (2 * model.embed_dim) - mu**2
    ln = model.layer_norm
    d = model.embed_dim
    normed = torch.cat([(0 - mu).expand_as(x), x - mu], -1) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
    torch.testing.assert_close(got, model.post_extract_proj(normed), atol=1e-5, rtol=1e-4)
    # Dropping the audio half (a tempting shortcut) changes every feature.
    proj = model.post_extract_proj
    wrong = F.linear(F.layer_norm(x, (d,), ln.weight[d:], ln.bias[d:]), proj.weight[:, d:], proj.bias)
    assert (got - wrong).abs().max() > 1e-2


def test_positional_conv_is_weight_normed_and_same_length():
    model = tiny()
    pos = model.encoder.pos_conv
    conv = pos[0]
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    assert g.shape == (1, 1, model.arch.conv_pos)  # one gain per tap (dim=2)
    torch.testing.assert_close(conv.weight, g * v / v.norm(dim=(0, 1), keepdim=True))
    x = torch.randn(2, model.embed_dim, 7)
    assert pos(x).shape == x.shape  # even kernel: T+1 outputs, SamePad drops the last


def test_output_layer_is_the_residual_stream_without_the_final_norm():
    model = tiny()
    x = clip(1, 5)
    last = model(x, output_layer=model.arch.layers)[0]
    torch.testing.assert_close(model(x)[0], model.encoder.layer_norm(last))
    assert not torch.allclose(model(x, output_layer=1)[0], last)


def test_lora_starts_as_identity_and_trains_while_the_rest_is_frozen():
    base, lora = tiny(), tiny(lora_rank=4, lora_scale=2.0)
    lora.load_state_dict(base.state_dict(), strict=False)
    x = clip(2, 5)
    torch.testing.assert_close(lora(x)[0], base(x)[0])
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert {n.split(".")[-2] for n in trainable} == {"lora_down", "lora_up"}
    assert {n.split(".")[-3] for n in trainable} == {"q_proj", "v_proj"}
    parent = nn.ModuleDict({"enc": lora}).train()
    assert not lora.training  # still eval: no dropout while the LoRA trains
    opt = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):  # down starts at zero, so up's gradient appears from the second step
        opt.zero_grad()
        parent["enc"](x)[0].pow(2).mean().backward()
        opt.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.parameters() if p.requires_grad)


def test_arch_from_dict():
    arch = AVHubertArch.from_dict({"name": "base", "lora_rank": 64})
    assert (arch.embed_dim, arch.layers, arch.heads, arch.ffn_dim, arch.lora_rank) == (768, 12, 12, 3072, 64)
    assert AVHubertArch.from_dict(None) == ARCHS["large"]
    with pytest.raises(ConfigError, match="arch.layer_count"):
        AVHubertArch.from_dict({"layer_count": 3})
    with pytest.raises(ConfigError, match="arch.name"):
        AVHubertArch.from_dict({"name": "huge"})
    with pytest.raises(ConfigError, match="heads"):
        AVHubertArch.from_dict({"name": "tiny", "heads": 5})


def count(model: nn.Module) -> int:
    floats = [b for b in model.buffers() if b.is_floating_point()]
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in floats)


@pytest.mark.parametrize("name, millions, keys", [("large", 324.5, 532), ("base", 102.5, 340)])
def test_video_path_sizes(name, millions, keys):
    with torch.device("meta"):
        model = build_avhubert(name)
    assert round(count(model) / 1e6, 1) == millions  # video path only
    assert len(model.state_dict()) == keys


def test_named_archs_are_not_shared_between_models():
    model = build_avhubert({"name": "tiny", "frozen": False})
    model.freeze()
    assert ARCHS["tiny"].frozen and not dataclasses.replace(ARCHS["tiny"], frozen=False).frozen
    assert build_avhubert({"name": "tiny", "frozen": False}).arch.frozen is False


def test_ctc_head_on_per_frame_features():
    model = tiny(frozen=False)
    head = FrameCTCHead(model.embed_dim, vocab_size=6)
    feats, lengths = model(clip(2, 8), torch.tensor([8, 6]))
    log_probs = head(feats)  # [T, B, V]
    assert log_probs.shape == (8, 2, 6)
    loss = F.ctc_loss(log_probs, torch.tensor([[1, 2, 3], [4, 5, 0]]), lengths, torch.tensor([3, 2]))
    loss.backward()
    assert model.feature_extractor_video.resnet.frontend3D[0].weight.grad is not None
