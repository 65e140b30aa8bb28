"""Does Whisper's own decoder read the corpus's spelled letters? A check of the frozen audio encoder.

Decodes each utterance of a label file with the full Whisper model (encoder + its own decoder, greedy) from two
encodings of the same clip: padded to 30 s as Whisper was trained, and at the clip's own length as mome encodes
it (`WhisperAudioEncoder`). Prints how many of the letters (the 4th word of a GRID sentence) appear in the
transcript. docs/experiments.md, section 18.

    python benchmarks/whisper_letters.py --corpus demo_out/corpus --model embedded:whisper-tiny.en --limit 80
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import soundfile as sf
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.modeling_outputs import BaseModelOutput

from mome.convert.embedded import resolve_model_path
from mome.data.labels import read_labels
from mome.models.whisper_encoder import WhisperAudioEncoder


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a `mome synth` corpus (labels/ and media)")
    parser.add_argument("--labels", default="labels/test.csv")
    parser.add_argument("--model", default="embedded:whisper-tiny.en")
    parser.add_argument("--limit", type=int, default=80)
    args = parser.parse_args()
    path = resolve_model_path(args.model)
    processor = WhisperProcessor.from_pretrained(path)
    whisper = WhisperForConditionalGeneration.from_pretrained(path).eval()
    own_length = WhisperAudioEncoder(args.model)
    rows, _ = read_labels(args.corpus / args.labels, root=args.corpus)
    read = {"padded to 30 s": 0, "own length": 0}
    for row in rows[: args.limit]:
        wav, _ = sf.read(args.corpus / f"{row.rel_path}.wav", dtype="float32")
        audio = torch.from_numpy(wav if wav.ndim == 1 else wav.mean(-1))
        mel = processor(audio.numpy(), sampling_rate=16_000, return_tensors="pt").input_features
        with torch.no_grad():
            padded = whisper.model.encoder(mel).last_hidden_state  # [1, 1500, D]
            short, frames = own_length(audio[None], torch.tensor([len(audio)]))
            for name, hidden in (("padded to 30 s", padded), ("own length", short[:, : frames[0]])):
                ids = whisper.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), max_new_tokens=30)
                letter = row.transcript.lower().split()[3]
                read[name] += letter in words(processor.batch_decode(ids, skip_special_tokens=True)[0])
    n = min(args.limit, len(rows))
    print(
        f"{args.model}: letters in Whisper's own transcript, of {n}: " + ", ".join(f"{k} {v}" for k, v in read.items())
    )


if __name__ == "__main__":
    main()
