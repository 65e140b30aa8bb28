"""Whisper encoder time for a batch of clips: mome's short-clip path vs the reference's 30 s padding.

    .venv/bin/python benchmarks/whisper_encoder_speed.py --model embedded:whisper-tiny.en --batch 8 --seconds 2 \
        --threads 2 --json out.json

Both paths include the log-mel features: mome's batched torch log-mel on the padded batch, and the
reference's WhisperFeatureExtractor padding every clip to 30 s (as the Llama-AVSR code does) followed by the full
1500-frame encoder. Prints the median of `--repeats` runs in ms and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN kernels)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded:whisper-tiny.en", help="Whisper dir or embedded:<name>")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()

    from transformers import WhisperFeatureExtractor

    from mome.models.whisper_encoder import SAMPLE_RATE, WhisperAudioEncoder

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = WhisperAudioEncoder(args.model)
    extractor = WhisperFeatureExtractor(feature_size=encoder.encoder.config.num_mel_bins)
    n = int(args.seconds * SAMPLE_RATE)
    audio = torch.randn(args.batch, n)  # [B, S], layer-normed like the dataset's waveforms
    lengths = torch.full((args.batch,), n)

    def padded_30s() -> torch.Tensor:
        mel = extractor(list(audio.numpy()), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            return encoder.encoder(input_features=mel).last_hidden_state  # [B, 1500, D]

    short_ms = median_ms(lambda: encoder(audio, lengths), args.repeats)
    full_ms = median_ms(padded_30s, args.repeats)
    result = {
        "model": args.model,
        "batch": args.batch,
        "clip_s": args.seconds,
        "threads": args.threads,
        "frames_short": encoder.padded_frames(n),
        "frames_30s": encoder.encoder.config.max_source_positions,
        "short_ms": round(short_ms, 1),
        "padded_30s_ms": round(full_ms, 1),
        "ratio": round(full_ms / short_ms, 1),
    }
    print(
        f"{args.batch} x {args.seconds:g} s clips, {args.threads} threads: short-clip {short_ms:.0f} ms "
        f"({result['frames_short']} frames), 30 s padding {full_ms:.0f} ms (1500 frames), "
        f"ratio {result['ratio']}x"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
