"""Whisper encoder time for a batch of clips: mome's short-clip path vs one padded batch vs the reference's 30 s.

    .venv/bin/python benchmarks/whisper_encoder_speed.py --model embedded:whisper-tiny.en --batch 8 --seconds 2 \
        --threads 2 --json out.json

Every path includes the log-mel features: mome's torch log-mel on each clip at its own length (batch-invariant);
one forward over the batch padded to its longest clip (mome's path before 2026-12-01: faster, but a clip's
features then depend on its neighbours, as Whisper has no padding mask); and the reference's
WhisperFeatureExtractor padding every clip to 30 s (as the Llama-AVSR code does) followed by the full 1500-frame
encoder. Clip lengths are drawn between `--min-seconds` and `--seconds`. Prints the median of `--repeats` runs
in ms and the ratios.
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
    parser.add_argument("--seconds", type=float, default=2.0, help="longest clip")
    parser.add_argument("--min-seconds", type=float, default=None, help="shortest clip (default: --seconds)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()

    from transformers import WhisperFeatureExtractor

    from mome.models.whisper_encoder import SAMPLE_RATE, WhisperAudioEncoder, log_mel, short_positions

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = WhisperAudioEncoder(args.model)
    extractor = WhisperFeatureExtractor(feature_size=encoder.encoder.config.num_mel_bins)
    n = int(args.seconds * SAMPLE_RATE)
    shortest = int((args.min_seconds if args.min_seconds is not None else args.seconds) * SAMPLE_RATE)
    lengths = torch.randint(shortest, n + 1, (args.batch,))
    lengths[0] = n
    audio = torch.randn(args.batch, n) * (torch.arange(n) < lengths[:, None])  # [B, S], zeros after each clip

    def one_padded_batch() -> torch.Tensor:
        n_frames = encoder.padded_frames(n)
        padded = torch.nn.functional.pad(audio, (0, n_frames * encoder.samples_per_frame - n))
        with torch.no_grad(), short_positions(encoder.encoder, n_frames):
            mel = log_mel(padded, encoder.window, encoder.mel_filters, encoder.hop_length)
            return encoder.encoder(input_features=mel).last_hidden_state  # [B, T_a, D]

    def padded_30s() -> torch.Tensor:
        mel = extractor(list(audio.numpy()), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            return encoder.encoder(input_features=mel).last_hidden_state  # [B, 1500, D]

    short_ms = median_ms(lambda: encoder(audio, lengths), args.repeats)
    batch_ms = median_ms(one_padded_batch, args.repeats)
    full_ms = median_ms(padded_30s, args.repeats)
    result = {
        "model": args.model,
        "batch": args.batch,
        "clip_s": args.seconds,
        "min_clip_s": shortest / SAMPLE_RATE,
        "threads": args.threads,
        "frames_short": encoder.padded_frames(n),
        "frames_30s": encoder.encoder.config.max_source_positions,
        "short_ms": round(short_ms, 1),
        "one_padded_batch_ms": round(batch_ms, 1),
        "padded_30s_ms": round(full_ms, 1),
        "ratio": round(full_ms / short_ms, 1),
        "per_clip_over_batch": round(short_ms / batch_ms, 2),
    }
    print(
        f"{args.batch} clips of {shortest / SAMPLE_RATE:g}-{args.seconds:g} s, {args.threads} threads: per clip "
        f"{short_ms:.0f} ms, one padded batch {batch_ms:.0f} ms ({result['frames_short']} frames), 30 s padding "
        f"{full_ms:.0f} ms (1500 frames); 30 s / per clip {result['ratio']}x, per clip / batch "
        f"{result['per_clip_over_batch']}x"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
