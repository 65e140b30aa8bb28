"""The rates and sizes every stage agrees on, each defined once and derived from the others where related
(as Whisper's `audio.py` does), so that a corpus, its loader and the encoders cannot drift apart."""

from __future__ import annotations


def exact_div(x: int, y: int) -> int:
    """x / y for a y that must divide x: a rate that does not divide evenly is a mistake, not a rounding."""
    if x % y:
        raise ValueError(f"{x} is not a multiple of {y}")
    return x // y


SAMPLE_RATE = 16_000
"""Audio samples per second: what Whisper and AV-HuBERT take, and what every wav of a corpus holds."""
FPS = 25
"""Video frames per second of every mouth-crop clip (LRS2/LRS3's rate; raw videos are resampled to it)."""
SAMPLES_PER_FRAME = exact_div(SAMPLE_RATE, FPS)  # 640
"""Audio samples per video frame: a clip's wav is exactly this times its frame count."""

WHISPER_HOP = 160
"""Samples per log-mel frame (100 Hz mel)."""
WHISPER_CONV_STRIDE = 2
"""Stride of the Whisper encoder's second convolution (the first has stride 1)."""
WHISPER_FRAME_RATE = exact_div(SAMPLE_RATE, WHISPER_HOP * WHISPER_CONV_STRIDE)  # 50
"""Whisper encoder features per second."""
AVHUBERT_FRAME_RATE = FPS
"""AV-HuBERT features per second: one per video frame."""
MAX_CLIP_SECONDS = 30
"""Longest clip a model reads at once, whatever its modalities: Whisper's window (its positional table), and
for video-only clips the same rule, far beyond the few seconds of an LRS utterance (`errors.ClipTooLong`)."""

MOUTH_CROP_SIZE = 96
"""Side of the mouth crops a corpus stores (`mome synth`, `mome prepare-lrs`; auto_avsr's 96x96)."""
MODEL_CROP_SIZE = 88
"""Side of the crop the video encoder sees, cut from the 96x96 mouth crop (the default `data.crop_size`)."""

SYNTH_SPEAKERS = {"train": 32, "val": 6, "test": 8, "noise": 8}
"""Distinct speakers per split of a synthetic corpus by default (`noise`: the babble's talkers, in no split)."""
