"""`mome.inference.inputs.load_clip` gives a corpus clip exactly the inputs `AVDataset` gives it in evaluation."""

import pytest
import torch

from mome.config import DataConfig
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.data.media import MediaError
from mome.errors import UserError
from mome.inference.inputs import clip_seconds, load_clip
from tiny import autocast_spy


@pytest.mark.parametrize(
    ("task", "modalities"),
    [("avsr", ("audio", "video")), ("asr", ("audio",)), ("vsr", ("video",)), ("any", ("audio", "video"))],
)
def test_clip_inputs_equal_the_evaluation_item(corpus, task, modalities):
    ds = AVDataset(corpus / "labels/test.csv", corpus, DataConfig(root=str(corpus)), train=False, modalities=modalities)
    expected = collate([ds[0]])
    stem = corpus / ds.rows[0].rel_path
    clip = load_clip(stem.with_suffix(".mp4"), stem.with_suffix(".wav"), task, input_kind="crop")
    assert clip.modalities == modalities and not clip.problems
    batch = clip.batch
    keys = [k for k in expected if isinstance(expected[k], torch.Tensor)]
    assert keys and sorted(keys) == sorted(k for k in batch if isinstance(batch[k], torch.Tensor))
    for key in keys:
        assert torch.equal(batch[key], expected[key]), key
    assert clip_seconds(batch) == pytest.approx(ds.rows[0].input_length / 25)


def test_a_mouth_crop_without_audio_track_names_the_option(corpus):
    mp4 = next(corpus.glob("synth/test/**/*.mp4"))
    with pytest.raises(MediaError, match="no audio track .give the audio with --audio"):
        load_clip(mp4, None, "avsr")


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", None)])
def test_transcribe_encodes_and_generates_under_the_decode_precision(corpus, monkeypatch, precision, dtype):
    from mome.config import load_config
    from mome.inference.api import Recognizer
    from mome.models.avsr import build_model

    cfg = load_config("tiny", [f"decode.precision={precision}", "decode.num_beams=1", "decode.max_new_tokens=2"])
    model = build_model(cfg.model).eval()
    seen = autocast_spy(model, monkeypatch)
    stem = next(corpus.glob("synth/test/**/*.mp4")).with_suffix("")
    result = Recognizer(model, cfg, None).transcribe(
        stem.with_suffix(".mp4"), stem.with_suffix(".wav"), (16, 5), input_kind="crop"
    )
    assert isinstance(result.text, str)
    assert seen == [dtype, dtype]
    assert {p.dtype for p in model.llm.parameters()} == {dtype or torch.float32}  # bf16: stored in bf16


def test_transcribe_each_decodes_with_int8_weights(corpus):
    """The API (so `mome transcribe` and `mome serve`) lays the LLM out as `decode.quantize` says."""
    from mome.config import load_config
    from mome.inference.api import Recognizer
    from mome.models.avsr import build_model

    cfg = load_config("tiny", ["decode.quantize=int8", "decode.num_beams=1", "decode.max_new_tokens=2"])
    model = build_model(cfg.model).eval()
    recognizer = Recognizer(model, cfg, None)
    fp32 = {n.rsplit(".", 1)[-1] for n, m in model.llm.named_modules() if isinstance(m, torch.nn.Linear)}
    assert fp32 == {"down_proj"}  # every other linear layer in int8 (`quantize.KEPT_FP32`)
    assert recognizer.precision.describe() == "precision fp32 (as requested; linear layers in int8)"
    stem = next(corpus.glob("synth/test/**/*.mp4")).with_suffix("")
    results, _ = recognizer.transcribe_each(stem.with_suffix(".mp4"), stem.with_suffix(".wav"), input_kind="crop")
    assert len(results) == 4 and all(isinstance(r.text, str) for r in results)


def test_an_unknown_input_kind_is_refused_in_one_line(corpus):
    mp4 = next(corpus.glob("synth/test/**/*.mp4"))
    with pytest.raises(UserError, match=r"input_kind 'bogus': expected one of auto, crop, raw"):
        load_clip(mp4, mp4.with_suffix(".wav"), "avsr", input_kind="bogus")
