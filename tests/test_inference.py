"""`mome.inference.load_clip` gives a corpus clip exactly the inputs `AVDataset` gives it in evaluation."""

import pytest
import torch

from mome.config import DataConfig
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.data.media import MediaError
from mome.inference import clip_seconds, load_clip


@pytest.mark.parametrize("modalities", [("audio", "video"), ("audio",), ("video",)])
def test_clip_inputs_equal_the_evaluation_item(corpus, modalities):
    ds = AVDataset(corpus / "labels/test.csv", corpus, DataConfig(root=str(corpus)), train=False, modalities=modalities)
    expected = collate([ds[0]])
    stem = corpus / ds.rows[0].rel_path
    batch = load_clip(stem.with_suffix(".mp4"), stem.with_suffix(".wav"), modalities, input_kind="crop")
    keys = [k for k in expected if isinstance(expected[k], torch.Tensor)]
    assert keys and sorted(keys) == sorted(k for k in batch if isinstance(batch[k], torch.Tensor))
    for key in keys:
        assert torch.equal(batch[key], expected[key]), key
    assert clip_seconds(batch) == pytest.approx(ds.rows[0].input_length / 25)


def test_a_mouth_crop_without_audio_track_names_the_option(corpus):
    mp4 = next(corpus.glob("synth/test/**/*.mp4"))
    with pytest.raises(MediaError, match="no audio track .give the audio with --audio"):
        load_clip(mp4, None, ("audio", "video"))
