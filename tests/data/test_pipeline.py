import numpy as np
import torch

from mome.config import DataConfig
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.data.media import read_audio
from mome.data.noise import Babble, eval_rng, mix_at_snr, snr_db
from mome.data.transforms import VIDEO_MEAN, VIDEO_STD, time_mask, video_transform


def _cfg(root):
    return DataConfig(root=str(root))


def test_item_shapes_and_collate(corpus):
    ds = AVDataset(corpus / "labels/train.csv", corpus, _cfg(corpus), train=True)
    items = [ds[i] for i in range(len(ds))]
    for it in items:
        t = it["video"].shape[0]
        assert it["video"].shape == (t, 1, 88, 88) and it["video"].dtype == torch.float32
        assert it["audio"].shape == (640 * t,) and it["text"] == it["text"].lower()
        assert it["meta"]["grammar"] in ("grid", "open")
    batch = collate(items + [None])
    assert batch["video"].shape[0] == len(items) == len(batch["ids"]) == len(batch["texts"])
    assert batch["audio_lengths"].tolist() == [640 * n for n in batch["video_lengths"].tolist()]
    assert batch["audio"].shape[1] == max(batch["audio_lengths"]) and batch["video"].shape[1] == max(
        batch["video_lengths"]
    )
    assert collate([None, None]) is None


def test_audio_only_and_video_only(corpus):
    a = AVDataset(corpus / "labels/test.csv", corpus, _cfg(corpus), train=False, modalities=("audio",))[0]
    v = AVDataset(corpus / "labels/test.csv", corpus, _cfg(corpus), train=False, modalities=("video",))[0]
    assert "video" not in a and "audio" not in v and len(a["audio"]) == 640 * len(v["video"])


def test_eval_noise_is_reproducible_and_seeded(corpus):
    cfg = _cfg(corpus)
    first = AVDataset(corpus / "labels/test.csv", corpus, cfg, train=False, eval_snr=0, noise_seed=3)
    again = AVDataset(corpus / "labels/test.csv", corpus, cfg, train=False, eval_snr=0, noise_seed=3)
    other = AVDataset(corpus / "labels/test.csv", corpus, cfg, train=False, eval_snr=0, noise_seed=4)
    clean = AVDataset(corpus / "labels/test.csv", corpus, cfg, train=False)
    backwards = {i: first[i]["audio"] for i in reversed(range(len(first)))}  # access order must not matter
    for i in range(len(again)):
        assert torch.equal(backwards[i], again[i]["audio"])
    assert not torch.equal(first[0]["audio"], other[0]["audio"])
    assert not torch.equal(first[0]["audio"], clean[0]["audio"])
    assert torch.equal(first[0]["video"], clean[0]["video"])  # noise never touches video


def test_snr_mixing_within_half_a_db(corpus):
    babble = Babble(corpus / "noise" / "babble.wav")
    clean = read_audio(next(corpus.glob("synth/test/**/*.wav")))
    for snr in (-5, 0, 5, 10, 15, 20):
        noise = babble.segment(len(clean), eval_rng("u", snr, 0))
        mixed = mix_at_snr(clean, noise, snr)
        assert abs(snr_db(clean, mixed - clean) - snr) < 0.5
    assert np.array_equal(babble.add(clean, None, np.random.default_rng(0)), clean)


def test_video_transform_eval_is_centre_crop_normalised():
    frames = np.full((5, 96, 96, 3), 255, np.uint8)
    frames[:, 4:92, 4:92] = 0
    x = video_transform(frames, train=False, rng=np.random.default_rng(0))
    assert x.shape == (5, 1, 88, 88)
    assert torch.allclose(x, torch.full_like(x, (0 - VIDEO_MEAN) / VIDEO_STD))


def test_time_mask_bounds():
    x = np.ones((100, 3), np.float32)
    masked = time_mask(x, window=10, stride=25, rng=np.random.default_rng(0))
    assert (masked == 0).all(1).sum() <= 4 * 9 and masked.shape == x.shape


def test_training_items_vary_between_epochs_but_not_between_runs(corpus):
    ds = AVDataset(corpus / "labels/train.csv", corpus, _cfg(corpus), train=True)
    ds.set_epoch(0)
    a = ds[0]["audio"]
    torch.manual_seed(123)  # global RNG state plays no part: resuming mid-epoch reproduces the batch
    assert torch.equal(a, ds[0]["audio"])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["audio"])


def test_time_mask_switch(corpus):
    """`data.time_mask: false` leaves training audio equal to the clean eval audio and masks no video frame."""

    def items(time_mask: bool, train: bool) -> list[dict]:
        cfg = DataConfig(root=str(corpus), time_mask=time_mask, train_snrs=[None])
        ds = AVDataset(corpus / "labels/train.csv", corpus, cfg, train=train)
        return [ds[i] for i in range(len(ds))]

    def masked_frames(batch: list[dict]) -> int:  # frames that were all zero before normalisation
        return sum(int((it["video"].flatten(1) == (0 - VIDEO_MEAN) / VIDEO_STD).all(1).sum()) for it in batch)

    def audio_as_eval(batch: list[dict]) -> list[bool]:
        return [torch.equal(it["audio"], ref["audio"]) for it, ref in zip(batch, clean)]

    clean = items(False, train=False)
    off, on = items(False, train=True), items(True, train=True)
    assert all(audio_as_eval(off)) and masked_frames(off) == 0
    assert not all(audio_as_eval(on)) and masked_frames(on) > 0
