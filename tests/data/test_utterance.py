"""One utterance, three readers: `AVDataset`, `load_clip` and the feature cache give the encoders the same
tensors (torch.equal), and refuse the same broken utterance. A change to one reader that the others do not
follow makes cached features, training and `mome transcribe` disagree silently. Then the chain's own length check."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mome.config import Config, DataConfig, load_config
from mome.data.dataset import AVDataset
from mome.data.media import MediaError, read_audio
from mome.data.utterance import InputChain, Utterance
from mome.features.cache import FeatureCache
from mome.features.keys import CLEAN, Condition
from mome.features.store import ShardWriter
from mome.inference.inputs import load_clip
from mome.models.encoders import build_audio_encoder, build_video_encoder

TRAIN_VERSION_SALT = 0x6D6F6D65
"""The third word of a training version's generator (`Condition.rng`): as an epoch, it makes the dataset's
training generator the version's."""


def _config(root: Path, cache: Path, *overrides: str) -> Config:
    return load_config("tiny", [f"data.root={root}", f"data.feature_cache={cache}", *overrides])


def _cache_inputs(
    cfg: Config, labels: str, conditions: list[Condition], monkeypatch
) -> tuple[dict[tuple[str, str], torch.Tensor], FeatureCache]:
    """What the cache hands its encoders, by (utterance, "video" or the audio condition's name), and the cache."""
    torch.manual_seed(0)
    cache = FeatureCache(cfg, {"audio": build_audio_encoder(cfg.model), "video": build_video_encoder(cfg.model)})
    clips: list[torch.Tensor] = []
    seen: dict[tuple[str, str], torch.Tensor] = {}
    encode, add = FeatureCache._encode, ShardWriter.add

    def spy_encode(self: FeatureCache, modality: str, clip: torch.Tensor) -> np.ndarray:
        clips.append(clip.clone())
        return encode(self, modality, clip)

    def spy_add(self: ShardWriter, key: str, features: np.ndarray, extra: dict) -> None:
        name = key.split(":")[0].rsplit(".", 1)[0]
        seen[name, "video" if key.endswith("|crop=" + str(cfg.data.crop_size)) else key.rsplit("|", 1)[1]] = clips.pop()
        add(self, key, features, extra)

    monkeypatch.setattr(FeatureCache, "_encode", spy_encode)
    monkeypatch.setattr(ShardWriter, "add", spy_add)
    cache.fill(labels, conditions, progress=False)
    monkeypatch.undo()
    return seen, cache


def test_clean_evaluation_inputs_are_one_chain(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = _config(corpus, tmp_path / "cache")
    dataset = AVDataset(cfg.data.test_labels, corpus, cfg.data, train=False)
    cached, _ = _cache_inputs(cfg, cfg.data.test_labels, [CLEAN], monkeypatch)
    assert len(dataset) >= 2 and len(cached) == 2 * len(dataset)
    for i, row in enumerate(dataset.rows):
        item, stem = dataset[i], corpus / row.rel_path
        clip = load_clip(
            stem.with_suffix(".mp4"),
            stem.with_suffix(".wav"),
            "avsr",
            cfg.data.crop_size,
            "crop",
            tolerance=cfg.data.av_tolerance_frames,
        ).batch
        for modality, name in (("video", "video"), ("audio", "clean")):
            assert torch.equal(item[modality], clip[modality][0]), modality
            assert torch.equal(item[modality], cached[row.rel_path, name]), modality


def test_noisy_evaluation_inputs_are_one_chain(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = _config(corpus, tmp_path / "cache")
    seed = cfg.data.eval_noise_seed
    dataset = AVDataset(cfg.data.test_labels, corpus, cfg.data, train=False, eval_snr=0.0, noise_seed=seed)
    condition = FeatureCache(cfg, {}).keys.eval_condition(0.0, seed)
    cached, _ = _cache_inputs(cfg, cfg.data.test_labels, [condition], monkeypatch)
    for i, row in enumerate(dataset.rows):
        item = dataset[i]
        assert item["meta"]["snr"] == 0.0
        assert not torch.equal(item["audio"], AVDataset(cfg.data.test_labels, corpus, cfg.data, False)[i]["audio"])
        assert torch.equal(item["audio"], cached[row.rel_path, condition.name])
        assert torch.equal(item["video"], cached[row.rel_path, "video"])


def test_a_cached_training_version_is_the_datasets_training_draw(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """Version k of an utterance is the audio the dataset draws in training with augment seed k at the epoch
    `TRAIN_VERSION_SALT` (no time masks, no clean SNR, no video: the same generator, drawn the same way)."""
    cfg = _config(
        corpus, tmp_path / "cache", "data.train_snrs=[0,10]", "data.time_mask=false", "data.feature_noisy_versions=2"
    )
    cache = FeatureCache(cfg, {})
    conditions = cache.keys.train_conditions()
    assert [c.version for c in conditions] == [0, 1]
    cached, _ = _cache_inputs(cfg, cfg.data.train_labels, conditions, monkeypatch)
    for condition in conditions:
        dataset = AVDataset(cfg.data.train_labels, corpus, cfg.data, True, ("audio",), augment_seed=condition.version)
        dataset.set_epoch(TRAIN_VERSION_SALT)
        for i, row in enumerate(dataset.rows):
            assert torch.equal(dataset[i]["audio"], cached[row.rel_path, condition.name])


def test_the_three_refuse_the_same_broken_utterance(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    root = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    cfg = _config(root, tmp_path / "cache")
    dataset = AVDataset(cfg.data.test_labels, root, cfg.data, train=False)
    stem = root / dataset.rows[0].rel_path
    wav = stem.with_suffix(".wav")
    sf.write(str(wav), np.tile(read_audio(wav), 4), 16000)
    assert dataset[0] is None and "frames long, video" in dataset.bad[dataset.rows[0].rel_path]
    with pytest.raises(MediaError, match="audio is .* frames long, video"):
        load_clip(stem.with_suffix(".mp4"), wav, "avsr", input_kind="crop", tolerance=cfg.data.av_tolerance_frames)
    cached, cache = _cache_inputs(cfg, cfg.data.test_labels, [CLEAN], monkeypatch)
    assert [reason for reason in cache.stores["audio"].failures.values() if "frames long, video" in reason]
    assert (dataset.rows[0].rel_path, "clean") not in cached and (dataset.rows[0].rel_path, "video") in cached
    assert (dataset.rows[1].rel_path, "clean") in cached


@pytest.mark.parametrize(
    ("samples", "tolerance", "refused"),
    [(640 * 13, 3, False), (640 * 14, 3, True), (640 * 100, None, False), (640 * 10, 0, False)],
)
def test_the_length_check_refuses_beyond_the_tolerance_only(samples: int, tolerance: int | None, refused: bool) -> None:
    """Audio of `samples` against 10 video frames: beyond `tolerance` frames it is refused, naming the option."""
    utterance = Utterance(None, np.zeros(samples, np.float32), 10, Path("a.wav"))
    chain = InputChain(tolerance=tolerance)
    if refused:
        message = r"a\.wav: audio is 14\.0 frames long, video 10 .*data\.av_tolerance_frames"
        with pytest.raises(MediaError, match=message):
            chain.check(utterance)
    else:
        chain.check(utterance)
        assert len(chain.inputs(utterance)[0]["audio"]) == 640 * 10  # cut or padded to the video


def test_from_config_can_leave_the_lengths_unchecked() -> None:
    data = DataConfig(crop_size=80, time_mask=False, av_tolerance_frames=5)
    assert InputChain.from_config(data) == InputChain(80, False, 5)
    assert InputChain.from_config(data, check=False).tolerance is None
