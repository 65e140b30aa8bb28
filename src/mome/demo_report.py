"""The demo's report: `<out>/README.md`, saying what ran, how long it took and what came out."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
import transformers

from mome.evaluation.evaluate import markdown


def _wer(results: dict[str, Any], group: str, combo: str, snr: str) -> float | None:
    cell = results["wer"].get(group, {}).get(combo, {}).get(snr)
    return None if not cell or not cell["utterances"] else 100 * cell["wer"]


def noise_comparison(results: dict[str, dict[str, Any]], snr: str = "0") -> list[str]:
    """AVSR vs the audio-only model trained with the same budget, at the same audio rate and SNR."""
    if "asr" not in results or "avsr" not in results:
        return []
    lines = [
        f"| audio rate | group | ASR WER @ {snr} dB | AVSR WER @ {snr} dB (video rate) | relative reduction |",
        "|---:|---|---:|---:|---:|",
    ]
    for combo in results["avsr"]["combinations"]:
        a_rate, key = combo["audio_rate"], combo["key"]
        for group in results["avsr"]["groups"]:
            asr = _wer(results["asr"], group, f"a{a_rate}", snr)
            avsr = _wer(results["avsr"], group, key, snr)
            if asr is None or avsr is None:
                continue
            rel = f"{100 * (asr - avsr) / asr:.0f}%" if asr > 0 else "-"
            lines.append(f"| {a_rate} | {group} | {asr:.2f} | {avsr:.2f} (v{combo['video_rate']}) | {rel} |")
    return lines


def write_report(opts: Any, results: dict[str, dict[str, Any]], times: dict[str, float]) -> Path:
    out = Path(opts.out)
    lip = out / "lip_encoder.json"
    lines = [
        "# mome demo report",
        "",
        "What ran: `mome demo` (stages in `mome/demo.py`). Frozen pretrained Whisper tiny.en and SmolLM2-135M "
        "(truncated to the layers the `demo` preset keeps), a frozen lip encoder pretrained on the train split, "
        "trainable projectors and MoME adapters, audio {4,16} x video {2,5} trained together "
        f"({opts.avsr_steps} steps); an audio-only model with the same steps (ASR, the noise baseline) and a "
        f"video-only model (VSR, {opts.vsr_steps} steps). Test split = unseen speakers and sentences.",
        "",
        f"Options: `{json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()})}`",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}.",
        "",
        "## Time per stage (s)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in times.items()],
        f"| **total** | **{sum(times.values()):.0f}** |",
        "",
    ]
    if lip.is_file():
        metrics = {k: v for k, v in json.loads(lip.read_text()).items() if k != "loss_history"}
        lines += ["## Lip encoder pretraining", "", "```json", json.dumps(metrics, indent=2), "```", ""]
    comparison = noise_comparison(results)
    if comparison:
        lines += ["## Babble noise at 0 dB: AVSR vs ASR trained with the same budget", "", *comparison, ""]
    for task, res in results.items():
        body = markdown(res).replace("# WER", "## WER", 1).replace("\n## ", "\n### ")
        lines += [body, "", f"![WER vs tokens per second, {task}](eval/{task}/wer_vs_tokens.png)", ""]
    lines += [
        "Per-utterance hypotheses: `eval/<task>/hypotheses.jsonl`; training curves: `runs/<task>/metrics.csv` "
        "and `runs/<task>/tensorboard`.",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
