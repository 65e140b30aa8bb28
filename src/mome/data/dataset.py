"""`AVDataset`: one label row -> audio and video tensors, for the synthetic corpus and preprocessed LRS2/LRS3 alike.

    item = {"id": rel_path, "audio": [S] float32 (16 kHz, S = 640 * T_v), "video": [T_v, 1, 88, 88] float32,
            "text": lowercase transcript, "meta": dict}

A broken utterance (missing, empty, truncated or undecodable file; audio and video lengths that disagree
by more than `DataConfig.av_tolerance_frames`) is logged with its file and reason, recorded in
`dataset.bad`, and returned as None, which `collate` drops, so one bad file never stops an epoch.
Malformed label rows, and rows whose media would resolve outside `root` (`..`, an absolute path, a symlink
out), are skipped with their `file:line` when the labels are read (`labels.read_labels`), and listed in
`dataset.label_problems`.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mome.config import DataConfig
from mome.data.labels import LabelRow, read_labels, read_metadata
from mome.data.media import MediaError
from mome.data.noise import Babble, eval_rng
from mome.data.utterance import InputChain

log = logging.getLogger(__name__)
MODALITIES = ("audio", "video")


class AVDataset(Dataset):
    """Utterances of one label file.

    Args:
        labels_path: label CSV (the absolute path `DataConfig` resolved).
        root: corpus root; media at `<root>/<rel_path>.{mp4,wav}`.
        train: random crop, time masks and babble at an SNR drawn from `cfg.train_snrs`.
        modalities: which streams to load; an audio-only item has no "video" key and vice versa.
        eval_snr: (evaluation) babble at this SNR in dB; None = clean.
        noise_seed: (evaluation) with the utterance id and SNR, fixes the noise exactly.
        augment_seed: (training) with the epoch and the utterance id, fixes the augmentation (`set_epoch`).
    """

    def __init__(
        self,
        labels_path: str | Path,
        root: str | Path,
        cfg: DataConfig,
        train: bool,
        modalities: tuple[str, ...] = MODALITIES,
        eval_snr: float | None = None,
        noise_seed: int = 0,
        augment_seed: int = 0,
    ) -> None:
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
        self.root = Path(root)
        self.rows, self.label_problems = read_labels(labels_path, root=self.root)
        self.meta = read_metadata(self.root)
        self.cfg, self.train, self.modalities = cfg, train, tuple(modalities)
        self.eval_snr, self.noise_seed = eval_snr, noise_seed
        self.augment_seed, self.epoch = augment_seed, 0
        self.clean_epochs = cfg.clean_epochs  # the trainer resolves `data.clean_steps_share` into epochs
        self.bad: dict[str, str] = {}
        self.chain = InputChain.from_config(cfg)
        self.babble = self._babble()

    def _babble(self) -> Babble | None:
        """The noise file, read once, when this split mixes noise into its audio."""
        cfg = self.cfg
        needs_noise = "audio" in self.modalities and (
            self.eval_snr is not None or (self.train and any(s is not None for s in cfg.train_snrs))
        )
        return Babble(Path(cfg.noise_path)) if needs_noise and cfg.noise_path else None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int]:
        """Video frames per utterance (the label column), for the frame-budget sampler."""
        return [r.input_length for r in self.rows]

    def __getitem__(self, index: int) -> dict | None:
        row = self.rows[index]
        try:
            return self._load(row)
        except (MediaError, ValueError) as err:
            log.warning("skipping %s: %s", row.rel_path, err)
            self.bad[row.rel_path] = str(err)
            return None

    def set_epoch(self, epoch: int) -> None:
        """Training augmentation is a function of (seed, epoch, utterance): identical whatever the worker
        count, the batch order or a resume in mid-epoch."""
        self.epoch = epoch

    @property
    def clean_epoch(self) -> bool:
        """Training in one of the curriculum's first epochs: clean audio only."""
        return self.train and self.epoch < self.clean_epochs

    def _rng(self, row: LabelRow) -> np.random.Generator:
        if self.train:
            return np.random.default_rng(
                [zlib.crc32(row.rel_path.encode()), self.augment_seed & 0xFFFFFFFF, self.epoch]
            )
        return eval_rng(row.rel_path, self.eval_snr, self.noise_seed)

    def _item(self, row: LabelRow) -> dict:
        """The fields of an item that do not come from its media."""
        return {
            "id": row.rel_path,
            "text": row.transcript.lower(),
            "meta": {"dataset": row.dataset, **self.meta.get(row.rel_path, {})},
        }

    def _load(self, row: LabelRow) -> dict:
        """The item through the one chain of every reader (`mome.data.utterance`), with this split's noise."""
        rng = self._rng(row)
        item = self._item(row)
        utterance = self.chain.read(self.root, row.rel_path, self.modalities, row.input_length)
        snrs = ((None,) if self.clean_epoch else self.cfg.train_snrs) if self.train else (self.eval_snr,)
        inputs, snr = self.chain.inputs(utterance, self.train, rng, self.babble, snrs)
        item.update(inputs)
        if utterance.samples is not None:
            item["meta"]["snr"] = snr
        return item
