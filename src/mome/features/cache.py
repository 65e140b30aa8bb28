"""`FeatureCache`: the frozen encoders' outputs for one config's corpus, computed once, read many times.

    training utterance   video: centre crop          audio: K noisy versions, and clean if data.train_snrs has null
    validation           video: centre crop          audio: clean
    evaluation           video: centre crop          audio: each SNR asked for, noise seeded per utterance

What an entry holds (`data.feature_cache_store`): `full`, the encoder's output [frames, D]; or `pooled`, the
output average-pooled at each of the model's rates, one after another [sum of tokens, D], with `frames` and
`pooled` ([[rate, tokens], ...]) in its extra fields (`split_pooled`). The pooling is the model's own
(`models.pooling.pool`) on the fp16-rounded output, so a pooled entry is what pooling a full entry gives.

Each clip is encoded on its own (batch of one), so a feature never depends on what else was computed with it.
The encoders run in their own dtype (fp32), without autocast: the evaluation features equal those of the
uncached path in fp32 up to fp16 storage (under a bf16 `decode.precision` the uncached path encodes in bf16).
A trainable encoder (LoRA in AV-HuBERT) cannot be cached: its features change with every step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mome.config import Config
from mome.data.labels import LabelRow, read_labels
from mome.data.media import MediaError
from mome.data.noise import Babble
from mome.data.utterance import InputChain, Utterance
from mome.errors import UserError
from mome.features.keys import CLEAN, Condition, FeatureKeys, encoder_identity
from mome.features.store import FeatureStore, Mode, ShardWriter, describe_cache
from mome.models.pooling import pool


class Need(NamedTuple):
    """What one utterance lacks: the video key to encode (None: cached or no video), the clip's frames
    (None until the video is decoded) and the audio conditions to encode (all of them while frames is None)."""

    video_key: str | None
    frames: int | None
    audio: list[Condition]


@dataclass
class FillStats:
    """What one `fill` did, for the throughput line. `seconds` is wall time, set by whoever measured it."""

    utterances: int = 0
    clips: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    failed: int = 0
    seconds: float = 0.0
    bytes_written: int = 0

    def add(self, other: FillStats) -> None:
        self.utterances += other.utterances
        for k, v in other.clips.items():
            self.clips[k] += v
        self.failed += other.failed
        self.bytes_written += other.bytes_written

    def line(self) -> str:
        clips = sum(self.clips.values())
        rate = clips / self.seconds if self.seconds else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"encoded {self.clips['audio']} audio + {self.clips['video']} video clips of {self.utterances} utterances "
            f"in {self.seconds:.1f} s ({rate:.1f} clips/s){failed}; wrote {self.bytes_written / 2**20:.1f} MiB"
        )


NOT_SET = "data.feature_cache: not set; name a directory, e.g. data.feature_cache=features"
ESTIMATE_AFTER = (3, 5.0)
"""A fill with more to do prints how long it will take once it has encoded this many utterances or spent this
many seconds, whichever comes first: a large corpus can take days on a CPU, which is better known at once."""


def duration(seconds: float) -> str:
    """`40 s`, `12 min`, `3 h 05 min`, `2 d 4 h`: a rough length of time, to the unit that matters."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _clips(need: Need) -> int:
    """The clips an utterance's need will encode (a video first decoded brings every audio condition)."""
    return (need.video_key is not None) + len(need.audio)


class FeatureCache:
    """The stores of a config's encoders under `data.feature_cache`, and the keys of its corpus.

    Args:
        cfg: the run's config (`data.feature_cache`, `data.root`, noise and SNR settings, the task).
        encoders: {"audio": Whisper, "video": AV-HuBERT} for the modalities the task uses.
        mode: how the stores verify their shards (`store.Mode`): `read` refuses a damaged one.
    """

    def __init__(self, cfg: Config, encoders: dict[str, nn.Module], mode: Mode = "read") -> None:
        if cfg.data.feature_cache is None:
            raise UserError(NOT_SET)
        if cfg.data.root is None:
            raise UserError("data.root: not set; point it at a corpus")
        self.cfg = cfg
        self.directory = Path(cfg.data.feature_cache)
        self.encoders = encoders
        self.keys = FeatureKeys.from_config(cfg.data)
        comp = cfg.model.compression
        rates = {"audio": comp.audio_rates, "video": comp.video_rates}
        self.pooled: dict[str, list[int]] = {}  # modality -> the rates its entries are pooled at (`pooled` store)
        if cfg.data.feature_cache_store == "pooled":
            self.pooled = {m: sorted(rates[m]) for m in encoders}
        self.stores: dict[str, FeatureStore] = {}
        for modality, encoder in encoders.items():
            if any(p.requires_grad for p in encoder.parameters()):
                raise UserError(
                    f"data.feature_cache: the {modality} encoder has trainable weights (e.g. LoRA in AV-HuBERT), so "
                    "its features change at every step and cannot be cached; set data.feature_cache=null"
                )
            identity = encoder_identity(encoder, modality)
            pooled = self.pooled.get(modality)
            suffix = "-avg" + "-".join(map(str, pooled)) if pooled else ""
            store = FeatureStore(self.directory / f"{modality}-{identity}{suffix}", mode)
            store.describe(
                {
                    "modality": modality,
                    "encoder": type(encoder).__qualname__,
                    "identity": identity,
                    **({"pooled": pooled} if pooled else {}),
                }
            )
            self.stores[modality] = store
        self.frame_rates = {m: int(e.frame_rate) for m, e in encoders.items()}  # for feature-level time masks
        # audio without video to match is not checked here, as before; the dataset checks it when it reads it
        self.chain = InputChain.from_config(cfg.data, check="video" in encoders)
        self._babble: Babble | None = None

    @classmethod
    def for_model(cls, cfg: Config, model: nn.Module) -> FeatureCache:
        """The cache of an `AVSRModel`'s frozen encoders (those its task uses)."""
        encoders = {m: getattr(model, f"{m}_encoder") for m in cfg.model.compression.modalities}
        return cls(cfg, {m: e for m, e in encoders.items() if e is not None})

    # -------------------------------------------------------------------------------------- what is needed
    def conditions(self, split: str, snrs: Iterable[float | None] = (None,)) -> list[Condition]:
        """The audio conditions a split needs: `train` (clean and the K versions), `val` (clean: validation
        losses are clean) or, for any other split, the evaluation SNRs `snrs`."""
        if "audio" not in self.stores or split == "val":
            return [CLEAN]  # no audio (VSR), or validation, which is clean
        if split == "train":
            return self.keys.train_conditions()
        return [self.keys.eval_condition(s, self.cfg.data.eval_noise_seed) for s in snrs]

    def _missing(self, row: LabelRow, conditions: list[Condition]) -> Need | None:
        """What one utterance lacks; None when nothing. A missing media file raises MediaError."""
        frames: int | None = row.input_length
        video_key = None
        if "video" in self.stores:
            key = self.keys.video(row)
            video = self.stores["video"]
            if key in video.failures:
                return None  # known bad (a changed file gets a new key and is tried again)
            if key in video.entries:
                _, _, rows, extra = video.entries[key]
                frames = extra.get("frames", rows)  # a pooled entry has fewer rows than the clip has frames
            else:
                video_key, frames = key, None  # the audio's length follows the video's, known once decoded
        audio: list[Condition] = []
        if "audio" in self.stores:
            audio = conditions if frames is None else self._absent(row, frames, conditions)
        return Need(video_key, frames, audio) if video_key or audio else None

    def _absent(self, row: LabelRow, frames: int, conditions: list[Condition]) -> list[Condition]:
        """The audio conditions of `row` that the store lacks."""
        keys = self.keys.audio(row, frames, conditions)
        return [c for c, key in zip(conditions, keys) if key not in self.stores["audio"]]

    # -------------------------------------------------------------------------------------- computing
    def fill_files(
        self,
        files: dict[str, Path],
        snrs: Iterable[float | None] = (None,),
        shard: tuple[int, int] = (0, 1),
        progress: bool = True,
        stop: object | None = None,
    ) -> dict[str, FillStats]:
        """`fill` each split's label file ({split: path}) with the conditions that split needs; stops early
        when `stop.stop` turns true. Returns the stats per split filled."""
        stats: dict[str, FillStats] = {}
        for split, path in files.items():
            stats[split] = self.fill(path, self.conditions(split, snrs), shard, progress=progress, stop=stop)
            if getattr(stop, "stop", False):
                break
        return stats

    def fill(
        self,
        labels: str | Path,
        conditions: list[Condition],
        shard: tuple[int, int] = (0, 1),
        limit: int | None = None,
        progress: bool = True,
        stop: object | None = None,
    ) -> FillStats:
        """Encode every utterance of `labels` (its share `shard` = (index, count)) that lacks an entry.

        `stop`: an object whose `.stop` turns true to end after the current utterance (`StopSignals`).
        """
        rows, _ = read_labels(labels, root=self.keys.root)
        rows = rows[:limit]
        index, count = shard
        stats = FillStats()
        todo = []
        for row in (row for i, row in enumerate(rows) if i % count == index):
            try:
                need = self._missing(row, conditions)
            except MediaError:  # a missing file: reported when an item needs it, as without the cache
                stats.failed += 1
                continue
            if need:
                todo.append((row, need))
        if not todo:
            return stats
        start = time.perf_counter()
        writers = {m: s.writer() for m, s in self.stores.items()}
        bar = tqdm(todo, desc=f"features {Path(labels).stem}", unit="utt", disable=not progress)
        total, estimated = sum(_clips(need) for _, need in todo), not progress
        try:
            for row, need in bar:
                self._encode_row(row, need, writers, stats)
                stats.utterances += 1
                if not estimated and stats.utterances < len(todo):
                    estimated = self._estimate(Path(labels).stem, len(todo), total, stats, time.perf_counter() - start)
                if stop is not None and getattr(stop, "stop", False):
                    break
        finally:
            bar.close()
            for writer in writers.values():
                writer.close()
                stats.bytes_written += writer.written_bytes
            stats.seconds = time.perf_counter() - start
        return stats

    @staticmethod
    def _estimate(name: str, utterances: int, clips: int, stats: FillStats, elapsed: float) -> bool:
        """Print how long the rest of a fill will take, at the clips per second so far, once `ESTIMATE_AFTER`
        is reached; returns whether it printed."""
        done = sum(stats.clips.values())
        if not done or (stats.utterances < ESTIMATE_AFTER[0] and elapsed < ESTIMATE_AFTER[1]):
            return False
        left = elapsed / done * max(0, clips - done)
        tqdm.write(
            f"features {name}: {utterances} utterances ({clips} clips) to encode; the first {stats.utterances} took "
            f"{elapsed:.1f} s: about {duration(left)} more"
        )
        return True

    def _encode_row(self, row: LabelRow, need: Need, writers: dict[str, ShardWriter], stats: FillStats) -> None:
        frames, audio = need.frames, need.audio
        if need.video_key is not None:
            frames = self._encode_video(row, need.video_key, writers["video"], stats)
            if frames is None:
                return
            try:
                audio = self._absent(row, frames, audio) if audio else []  # a missing wav: MediaError
            except MediaError:
                stats.failed += 1  # reported when an item needs it, as without the cache
                return
        if audio:
            self._encode_audio(row, frames, audio, writers["audio"], stats)

    def _encode_video(self, row: LabelRow, key: str, writer: ShardWriter, stats: FillStats) -> int | None:
        """Encode the clip's video; its frame count (the audio is cut to it), or None when it fails."""
        try:
            clip = self.chain.inputs(self.chain.read(self.keys.root, row.rel_path, ("video",), 0))[0]["video"]
        except (MediaError, ValueError) as err:
            writer.fail(key, str(err))
            stats.failed += 1
            return None
        features = self._encode("video", clip)
        self._add(writer, "video", key, features, {})
        stats.clips["video"] += 1
        return len(features)

    def _encode_audio(
        self, row: LabelRow, frames: int, conditions: list[Condition], writer: ShardWriter, stats: FillStats
    ) -> None:
        """Encode the audio cut to `frames` video frames in each condition; a failure fails all of them."""
        todo = list(zip(self.keys.audio(row, frames, conditions), conditions))
        try:
            utterance = self.chain.read(self.keys.root, row.rel_path, ("audio",), frames)  # decode, check
            for key, condition in todo:
                inputs, snr = self._mix(row, utterance, condition)
                extra = {"samples": len(utterance.samples), "snr": snr}
                self._add(writer, "audio", key, self._encode("audio", inputs["audio"]), extra)
                stats.clips["audio"] += 1
        except UserError as err:  # unreadable, lengths that disagree, longer than Whisper's 30 s
            for key, _ in todo:
                if key not in writer.keys:
                    writer.fail(key, str(err))
            stats.failed += 1

    def _add(self, writer: ShardWriter, modality: str, key: str, features: np.ndarray, extra: dict) -> None:
        """Write an entry: the encoder's output, or it pooled at each rate (`data.feature_cache_store`)."""
        rates = self.pooled.get(modality)
        if rates:
            x = torch.from_numpy(features.astype(np.float16).astype(np.float32))[None]  # as a full entry is read
            parts = [pool(x, torch.tensor([len(features)]), r).features[0] for r in rates]
            extra = {**extra, "frames": len(features), "pooled": [[r, len(p)] for r, p in zip(rates, parts)]}
            features = torch.cat(parts).numpy()
        writer.add(key, features, extra)

    def _mix(self, row: LabelRow, utterance: Utterance, condition: Condition) -> tuple[dict, float | None]:
        """The model inputs of one condition: the chain's evaluation transforms with this condition's noise
        (a training version draws its SNR first, from the same generator)."""
        rng = condition.rng(row.rel_path)
        snr = condition.snr
        if condition.version is not None:
            snr = self.keys.noisy_snrs[int(rng.integers(len(self.keys.noisy_snrs)))]
        return self.chain.inputs(utterance, False, rng, self.babble if snr is not None else None, (snr,))

    @property
    def babble(self) -> Babble:
        if self._babble is None:
            self._babble = Babble(Path(self.cfg.data.noise_path))
        return self._babble

    @torch.no_grad()
    def _encode(self, modality: str, clip: torch.Tensor) -> np.ndarray:
        """One clip ([S] audio or [T, 1, H, W] video) -> [frames, D] features, a batch of one."""
        encoder = self.encoders[modality]
        device = next(encoder.parameters()).device
        features, lengths = encoder(clip[None].to(device), torch.tensor([len(clip)], device=device))
        return features[0, : int(lengths[0])].float().cpu().numpy()

    # -------------------------------------------------------------------------------------- reading
    def read(self, modality: str, key: str, media: Path) -> tuple[np.ndarray, dict]:
        """An entry's features [frames, D] (float16, memory-mapped) and extras; MediaError if absent or failed."""
        try:
            return self.stores[modality].get(key)
        except KeyError as err:
            raise MediaError(media, f"no cached {modality} features ({err.args[0]})") from None

    def refresh(self) -> None:
        for store in self.stores.values():
            store.refresh()

    def summary(self) -> str:
        return describe_cache(self.directory)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["encoders"] = {}  # DataLoader workers read features; they never encode
        state["_babble"] = None
        return state


def split_pooled(features: np.ndarray, extra: dict) -> dict[int, np.ndarray]:
    """A pooled entry's rows as {rate: [tokens, D]} (views, no copy)."""
    out, start = {}, 0
    for rate, tokens in extra["pooled"]:
        out[int(rate)] = features[start : start + tokens]
        start += tokens
    return out
