"""Synthetic speakers: a voice (engine, voice name, rate, pitch) plus a face (`render.Appearance`).

Speakers are split-specific, as in LRS3: `make_speakers` draws a disjoint set for train, val, test and
`noise` (the talkers of the babble file, in no split). Each split mixes flite and espeak-ng speakers.
flite has only 4 voices, so a flite speaker is one of them with its own rate, pitch and face; espeak-ng
speakers also differ in accent and voice variant, and no espeak voice+variant is used in two splits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from mome.constants import SYNTH_SPEAKERS
from mome.synthetic.render import Appearance, random_appearance
from mome.synthetic.tts import ESPEAK_ACCENTS, ESPEAK_VARIANTS, FLITE_VOICES, Voice

SPLITS = ("train", "val", "test")


@dataclass
class Speaker:
    id: str
    split: str
    voice: Voice
    appearance: Appearance

    def to_dict(self) -> dict:
        v = self.voice
        return {
            "id": self.id,
            "split": self.split,
            "engine": v.engine,
            "voice": v.name,
            "rate": v.rate,
            "pitch": v.pitch,
            "appearance": self.appearance.to_dict(),
        }


def make_speakers(
    seed: int,
    counts: dict[str, int] | None = None,
    engines: tuple[str, ...] = ("flite", "espeak"),
    flite_fraction: float = 0.5,
    fixed_voices: bool = False,
) -> list[Speaker]:
    """Disjoint speakers per split; about `flite_fraction` of each split uses flite (at least one if the
    engine is enabled and the split has two or more speakers).

    `fixed_voices` keeps every voice at its default rate and pitch, so that speakers of one flite voice sound
    alike across splits (the setting of the feasibility prototype, docs/experiments.md); faces still differ.
    The same random draws are made either way, so nothing else about the speakers changes.
    """
    counts = counts or SYNTH_SPEAKERS
    rng = random.Random(f"speakers:{seed}")
    espeak_pool = [f"{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    rng.shuffle(espeak_pool)
    draw = _VoiceDraw(rng, espeak_pool, rng.randrange(len(FLITE_VOICES)), engines, flite_fraction, fixed_voices)
    # Up to the default count of each split first, then the speakers beyond it: a corpus with more training
    # speakers has the same validation, test and babble speakers (and a default corpus is unchanged).
    first = {split: min(n, SYNTH_SPEAKERS.get(split, n)) for split, n in counts.items()}
    speakers: list[Speaker] = []
    for split, n_first in first.items():
        speakers += [_speaker(seed, split, i, voice) for i, voice in enumerate(draw.voices(n_first))]
    for split, n in counts.items():
        extra = draw.voices(n - first[split])
        speakers += [_speaker(seed, split, first[split] + i, voice) for i, voice in enumerate(extra)]
    return speakers


def _speaker(seed: int, split: str, index: int, voice: Voice) -> Speaker:
    sid = f"{split}{index:03d}"
    return Speaker(sid, split, voice, random_appearance(random.Random(f"face:{seed}:{sid}")))


@dataclass
class _VoiceDraw:
    """Voices drawn in sequence from one random stream: flite voices in turn, espeak voices never reused."""

    rng: random.Random
    espeak_pool: list[str]
    flite_index: int
    engines: tuple[str, ...]
    flite_fraction: float
    fixed_voices: bool

    def voices(self, n: int) -> list[Voice]:
        """`n` voices, about `flite_fraction` of them flite (at least one of two or more, both engines on)."""
        if "flite" not in self.engines:
            n_flite = 0
        elif "espeak" not in self.engines:
            n_flite = n
        else:
            n_flite = min(n, max(1 if n >= 2 else 0, round(n * self.flite_fraction)))
        return [self._voice(flite=i < n_flite) for i in range(n)]

    def _voice(self, flite: bool) -> Voice:
        rng = self.rng
        if flite:
            name = FLITE_VOICES[self.flite_index % len(FLITE_VOICES)]
            self.flite_index += 1
            voice = Voice("flite", name, round(rng.uniform(0.85, 1.15), 3), round(rng.uniform(0.8, 1.25), 3))
        else:
            if not self.espeak_pool:
                raise ValueError(f"more espeak speakers than the {len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS)} voices")
            voice = Voice(
                "espeak", self.espeak_pool.pop(), round(rng.uniform(0.85, 1.2), 3), round(rng.uniform(0.7, 1.3), 3)
            )
        return replace(voice, rate=1.0, pitch=1.0) if self.fixed_voices else voice
