"""Loading official-layout AV-HuBERT checkpoints without fairseq, through the weights-only path.

The fake checkpoints reproduce the official fairseq trainer pickle at tiny size: real key
names, `weight_g`/`weight_v`, a fairseq `Dictionary` object in `task_state` (its class comes from a
throw-away `fairseq` module that is removed again before loading, as on a machine without fairseq).
"""

import contextlib
import dataclasses
import pathlib
import sys
import types

import pytest
import torch

from mome.config import VideoEncoderConfig
from mome.models.avhubert import ARCHS, STRUCTURAL_FIELDS, AVHubertArch, AVHubertEncoder, build_avhubert
from mome.models.avhubert_checkpoint import (
    POS_CONV,
    CheckpointError,
    build_video_encoder,
    check_and_load,
    encoder_state,
    infer_arch,
    load_avhubert,
    map_pos_conv_keys,
    read_checkpoint,
)
from mome.training.pretrain_video import save_lip_encoder

TINY = ARCHS["tiny"]
PRETRAIN_LABELS = 2004
"""Rows of `label_embs_concat` in the released pretrained files (dict.km.txt: 2000 clusters + 4 specials)."""


def official_layout(arch: AVHubertArch, labels: int = PRETRAIN_LABELS) -> dict[str, torch.Size]:
    """Key -> shape of an official pretrained state dict for `arch`, pretraining-only keys included:
    the format the loader must read, described here to make fake files of it."""
    with torch.device("meta"):
        model = AVHubertEncoder(dataclasses.replace(arch, lora_rank=0))
    layout = {k: v.shape for k, v in model.state_dict().items()}
    d = arch.embed_dim
    v = layout.pop(POS_CONV + "parametrizations.weight.original1")
    g = layout.pop(POS_CONV + "parametrizations.weight.original0")
    layout |= {POS_CONV + "weight_g": g, POS_CONV + "weight_v": v}
    layout |= {
        "mask_emb": torch.Size([104]),
        "label_embs_concat": torch.Size([labels, 256]),
        "feature_extractor_audio.proj.weight": torch.Size([d, 104]),
        "feature_extractor_audio.proj.bias": torch.Size([d]),
        "final_proj.weight": torch.Size([256, d]),
        "final_proj.bias": torch.Size([256]),
    }
    return layout


@contextlib.contextmanager
def fake_modules(*dotted_classes: str):
    """Make `pkg.mod.Class` importable just long enough to pickle instances of it."""
    added, classes = [], {}
    for dotted in dotted_classes:
        module, _, name = dotted.rpartition(".")
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            mod_name = ".".join(parts[:i])
            if mod_name not in sys.modules:
                sys.modules[mod_name] = types.ModuleType(mod_name)
                added.append(mod_name)
        cls = type(name, (), {"__module__": module, "__qualname__": name})
        setattr(sys.modules[module], name, cls)
        classes[dotted] = cls
    try:
        yield classes
    finally:
        for mod_name in added:
            del sys.modules[mod_name]


def official_state(arch=TINY, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout(arch, labels=12).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def write_pretrained(path, state=None, cfg_model=None, extra=None) -> dict[str, torch.Tensor]:
    """A `large_vox_iter5.pt`-like trainer pickle with a stubbed-out fairseq Dictionary."""
    state = official_state() if state is None else state
    with fake_modules("fairseq.data.dictionary.Dictionary") as cls:
        dictionary = cls["fairseq.data.dictionary.Dictionary"]()
        dictionary.__dict__.update(symbols=["<s>", "<pad>", "</s>", "<unk>", "0", "1"], bos_index=0, nspecial=4)
        model_cfg = {"_name": "av_hubert", "encoder_attention_heads": TINY.heads, "required_seq_len_multiple": 2}
        ckpt = {
            "args": None,
            "cfg": {
                "common": {"fp16": True},
                "model": {**model_cfg, **(cfg_model or {})},
                "task": {"input_modality": "video"},  # a key the released dataclasses do not know (#106)
            },
            "model": state,
            "criterion": None,
            "optimizer_history": [{"criterion_name": "AVHubertCriterion", "num_updates": 10}],
            "task_state": {"dictionaries": [dictionary]},
            "extra_state": {"metrics": {}, "previous_training_time": 1.5, **(extra or {})},
        }
        torch.save(ckpt, path)
    return state


def test_pretrained_checkpoint_loads_through_the_safe_path(tmp_path):
    state = write_pretrained(tmp_path / "base_vox_iter5.pt")
    assert "fairseq" not in sys.modules
    model = load_avhubert(tmp_path / "base_vox_iter5.pt")
    assert model.arch.embed_dim == TINY.embed_dim and model.arch.heads == TINY.heads and model.arch.layers == 2
    ours = model.state_dict()
    for key in ("encoder.layers.1.fc1.weight", "feature_extractor_video.resnet.trunk.layer2.0.downsample.1.weight"):
        assert torch.equal(ours[key], state[key])
    g, v = state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"]
    torch.testing.assert_close(model.encoder.pos_conv[0].weight, g * v / v.norm(dim=(0, 1), keepdim=True))
    assert not model.training and model(torch.randn(1, 3, 1, 24, 24))[0].shape == (1, 3, TINY.embed_dim)


def test_raw_checkpoint_keeps_the_dictionary_as_an_inert_stub(tmp_path):
    write_pretrained(tmp_path / "x.pt")
    ckpt = read_checkpoint(tmp_path / "x.pt")
    (dictionary,) = ckpt["task_state"]["dictionaries"]
    assert type(dictionary).__module__ == "fairseq.data.dictionary" and dictionary.symbols[-1] == "1"


def test_finetuned_checkpoint_with_prefix_decoder_and_tokenizer(tmp_path):
    state = official_state()
    state = {f"encoder.w2v_model.{k}": v for k, v in state.items() if not k.startswith(("final_proj", "label_embs"))}
    state["decoder.embed_tokens.weight"] = torch.zeros(5, 4)
    names = ("fairseq.data.dictionary.Dictionary", "fairseq.data.encoders.sentencepiece_bpe.SentencepieceBPE")
    with fake_modules(*names) as cls:
        cfg = {"model": {"_name": "av_hubert_seq2seq", "w2v_args": {"model": {"encoder_attention_heads": 2}}}}
        task_state = {"target_dictionary": cls[names[0]](), "s2s_tokenizer": cls[names[1]]()}
        torch.save({"args": None, "cfg": cfg, "model": state, "task_state": task_state}, tmp_path / "ft.pt")
    model = load_avhubert(tmp_path / "ft.pt")
    assert model.arch.heads == 2  # from w2v_args, the pretraining cfg
    ours = model.state_dict()["post_extract_proj.weight"]
    assert torch.equal(ours, state["encoder.w2v_model.post_extract_proj.weight"])


def test_unknown_globals_are_refused_unless_trusted(tmp_path):
    write_pretrained(tmp_path / "odd.pt", extra={"where": pathlib.PurePosixPath("/data")})
    with pytest.raises(CheckpointError, match=r"PurePosixPath.*--trusted-checkpoint.*trusted=True"):
        load_avhubert(tmp_path / "odd.pt")
    model = load_avhubert(tmp_path / "odd.pt", trusted=True)  # full unpickling; fairseq classes still stubbed
    assert model.arch.embed_dim == TINY.embed_dim


def test_missing_key_is_named(tmp_path):
    state = official_state()
    del state["encoder.layers.1.self_attn.k_proj.bias"]
    write_pretrained(tmp_path / "m.pt", state)
    with pytest.raises(CheckpointError, match=r"m\.pt.*missing.*encoder\.layers\.1\.self_attn\.k_proj\.bias"):
        load_avhubert(tmp_path / "m.pt")


def test_wrong_shape_is_named(tmp_path):
    state = official_state()
    state["encoder.layers.0.self_attn.v_proj.weight"] = torch.zeros(TINY.embed_dim, TINY.embed_dim + 1)
    write_pretrained(tmp_path / "s.pt", state)
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.0\.self_attn\.v_proj\.weight.*\[32, 33\].*\[32, 32\]"):
        load_avhubert(tmp_path / "s.pt")


def test_unexpected_key_is_named(tmp_path):
    state = official_state()
    state["encoder.layers.0.extra.weight"] = torch.zeros(1)
    write_pretrained(tmp_path / "u.pt", state)
    with pytest.raises(CheckpointError, match=r"unexpected.*encoder\.layers\.0\.extra\.weight"):
        load_avhubert(tmp_path / "u.pt")


def test_missing_file_and_unknown_head_count(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_avhubert(tmp_path / "nope.pt")
    torch.save({"model": official_state()}, tmp_path / "nocfg.pt")  # width 32 is not in the D->H table
    with pytest.raises(CheckpointError, match="head count"):
        load_avhubert(tmp_path / "nocfg.pt")


def test_config_arch_must_agree_with_the_file_but_adds_lora(tmp_path):
    write_pretrained(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="embed_dim=32.*768"):
        load_avhubert(tmp_path / "x.pt", {"name": "base"})
    model = load_avhubert(tmp_path / "x.pt", {"name": "tiny", "lora_rank": 4, "lora_scale": 2.0})
    assert model.encoder.layers[0].self_attn.q_proj.lora_down.weight.abs().sum() == 0
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_dictconfig_cfg_is_read_through_stubs(tmp_path):
    names = ("omegaconf.dictconfig.DictConfig", "omegaconf.nodes.AnyNode")
    with fake_modules(*names) as cls:
        node = cls[names[1]]()
        node.__dict__.update(_val=2, _metadata=None)
        model_cfg = cls[names[0]]()
        model_cfg.__dict__.update(_content={"encoder_attention_heads": node}, _parent=None)
        torch.save({"cfg": {"model": model_cfg}, "model": official_state()}, tmp_path / "dc.pt")
    assert load_avhubert(tmp_path / "dc.pt").arch.heads == 2


def test_mome_lip_encoder_round_trip(tmp_path):
    model = build_avhubert({"name": "tiny", "heads": 2, "frozen": False})
    save_lip_encoder(model, tmp_path / "lip.pt")
    cfg = VideoEncoderConfig(path=str(tmp_path / "lip.pt"), arch={"lora_rank": 2})
    loaded = build_video_encoder(cfg)
    assert loaded.arch.heads == 2 and loaded.arch.lora_rank == 2
    x = torch.randn(1, 4, 1, 24, 24)
    torch.testing.assert_close(loaded(x)[0], model.eval()(x)[0])
    assert build_video_encoder(VideoEncoderConfig(arch={"name": "tiny"})).arch == TINY


@pytest.mark.parametrize("name, millions, keys", [("large", 325.4, 538), ("base", 103.3, 346)])
def test_official_layout_sizes(name, millions, keys):
    layout = official_layout(ARCHS[name])
    assert len(layout) == keys  # keys of the released pretrained files
    floats = sum(s.numel() for k, s in layout.items() if not k.endswith("num_batches_tracked"))
    assert round(floats / 1e6, 1) == millions


@pytest.mark.parametrize("name", ["large", "base"])
def test_every_official_key_is_consumed_once_at_full_size(name):
    layout = official_layout(ARCHS[name])
    state = map_pos_conv_keys(encoder_state({"model": {k: torch.empty(s, device="meta") for k, s in layout.items()}}))
    assert infer_arch(state, {"model": {"encoder_attention_heads": ARCHS[name].heads}}) == {
        k: getattr(ARCHS[name], k) for k in STRUCTURAL_FIELDS
    }
    with torch.device("meta"):
        model = build_avhubert(name)
    check_and_load(model, state)  # raises on any missing, unexpected or mis-shaped key
    assert len(state) == len(layout) - 6  # only mask_emb, label_embs, audio proj and final_proj dropped


def test_official_layout_matches_the_spec_shapes():
    layout = official_layout(ARCHS["base"])
    assert layout["encoder.pos_conv.0.weight_g"] == (1, 1, 128)
    assert layout["encoder.pos_conv.0.weight_v"] == (768, 48, 128)
    assert layout["feature_extractor_video.resnet.frontend3D.0.weight"] == (64, 1, 5, 7, 7)
    assert layout["feature_extractor_video.resnet.trunk.layer4.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert "feature_extractor_video.resnet.trunk.layer1.0.downsample.0.weight" not in layout
    assert layout["layer_norm.weight"] == (1536,) and layout["post_extract_proj.weight"] == (768, 1536)
    assert layout["encoder.layers.11.fc1.weight"] == (3072, 768) and "encoder.layers.12.fc1.weight" not in layout
