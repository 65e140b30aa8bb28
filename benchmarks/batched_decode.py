"""Batched decoding in the Python API: a cascade over several clips and one clip at every rate combination,
decoded one row per generate call against `decode.batch_size` rows per call (`mome.inference.api`,
`AVSRModel.generate_rows`).

    .venv/bin/python benchmarks/batched_decode.py --threads 2
    .venv/bin/python benchmarks/batched_decode.py --preset tiny --clips 4 --tokens 4 --repeats 1   # a smoke run

From random encoder features of --clips clips (lengths spread over 0.5-1.5x --seconds; audio 50 Hz, video
25 Hz) and the preset's model (projectors and adapters at their initialisation), greedy decoding of up to
--tokens tokens, the way `Recognizer._decode_rows` does it:

    cascade     every clip at a16_v5, then the half with the lowest confidence at a4_v2 (a threshold at the
                median: what `transcribe_many(budget="auto")` decodes with a two-rung ladder)
    each        the first clip at every combination of the model (`transcribe_each`)

Both paths decode the same rows; the script checks that they give the same texts. The paths are interleaved
and the median over --repeats is shown, in ms per decoded row, with the ratio one-at-a-time / batched.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mome.config import load_config
from mome.constants import AVHUBERT_FRAME_RATE, WHISPER_FRAME_RATE
from mome.inference.api import Recognizer
from mome.models.avsr import AVSRModel, Features

AUDIO_DIM, VIDEO_DIM = 384, 768  # Whisper tiny, AV-HuBERT: only the projectors' input width depends on them


def clips(count: int, seconds: float) -> list[Features]:
    """Features of `count` clips of different lengths, each a batch of one (as `mome.inference.api` encodes them)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(count):
        length = seconds * (0.5 + i / max(count - 1, 1))
        ta, tv = int(length * WHISPER_FRAME_RATE), int(length * AVHUBERT_FRAME_RATE)
        out.append(
            Features(
                torch.randn(1, ta, AUDIO_DIM, generator=g),
                torch.tensor([ta]),
                torch.randn(1, tv, VIDEO_DIM, generator=g),
                torch.tensor([tv]),
            )
        )
    return out


def decode(recognizer: Recognizer, rows: list, batch_size: int) -> tuple[float, list[str], list[float]]:
    """Seconds, texts and confidences of `rows` decoded `batch_size` per generate call."""
    recognizer.cfg.decode.batch_size = batch_size
    start = time.perf_counter()
    out = recognizer._decode_rows(rows)
    return time.perf_counter() - start, [t for t, _, _ in out], [c for _, c, _ in out]


def cascade(recognizer: Recognizer, feats: list[Features], batch_size: int) -> tuple[float, list[str], int]:
    """A two-rung cascade (a16_v5, then a4_v2 for the less confident half): seconds, final texts, rows."""
    first_s, texts, confidences = decode(recognizer, [(f, (16, 5)) for f in feats], batch_size)
    threshold = statistics.median(confidences)
    going = [i for i, c in enumerate(confidences) if c < threshold]
    second_s, retried, _ = decode(recognizer, [(feats[i], (4, 2)) for i in going], batch_size)
    for i, text in zip(going, retried):
        texts[i] = text
    return first_s + second_s, texts, len(feats) + len(going)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", help="the model of this preset (demo: SmolLM2-135M, 4 layers)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8, help="decode.batch_size of the batched path")
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip length (GRID: about 3 s)")
    parser.add_argument("--tokens", type=int, default=16, help="decode.max_new_tokens (a GRID sentence: about 12)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(
        args.preset, ["decode.num_beams=1", f"decode.max_new_tokens={args.tokens}", "decode.precision=fp32"]
    )
    torch.manual_seed(0)
    model = AVSRModel.from_config(cfg.model, audio_dim=AUDIO_DIM, video_dim=VIDEO_DIM)
    recognizer = Recognizer(model, cfg, None)
    feats = clips(args.clips, args.seconds)
    each_rows = [(feats[0], combo) for combo in model.combinations]
    times: dict[tuple[str, int], list[float]] = {}
    texts: dict[tuple[str, int], list[str]] = {}
    rows = {"each": len(each_rows)}
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first round warms up
            for size in (1, args.batch_size):
                seconds, texts[("cascade", size)], rows["cascade"] = cascade(recognizer, feats, size)
                times.setdefault(("cascade", size), []).append(seconds)
                seconds, texts[("each", size)], _ = decode(recognizer, each_rows, size)
                times.setdefault(("each", size), []).append(seconds)
    print(
        f"\n{args.preset} preset, {args.clips} clips of {args.seconds:g} s on average, up to {args.tokens} tokens, "
        f"{torch.get_num_threads()} threads; median of {args.repeats}"
    )
    print(f"| decode | rows | ms per row, 1 per call | ms per row, {args.batch_size} per call | ratio | same texts |")
    print("|---|---:|---:|---:|---:|---|")
    for name in ("cascade", "each"):
        one, batched = (1000 * statistics.median(times[(name, s)][1:]) / rows[name] for s in (1, args.batch_size))
        same = texts[(name, 1)] == texts[(name, args.batch_size)]
        print(f"| {name} | {rows[name]} | {one:.1f} | {batched:.1f} | {one / batched:.2f}x | {same} |")


if __name__ == "__main__":
    main()
