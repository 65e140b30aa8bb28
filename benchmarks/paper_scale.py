"""The paper presets at their true size on this machine, as a user with checkpoints runs them: training steps
with and without the feature cache, a greedy and a beam decode, peak RSS, and the cache's bytes per second.

    python benchmarks/paper_scale.py --preset paper-mome-23-4-mhsa --preset paper-mtsk-ms \
        --preset paper-llama-avsr --steps 3 --utterances-per-step 1 --threads 2 --workdir paper_scale \
        --json paper_scale.json
    python benchmarks/paper_scale.py --tiny          # every size shrunk: checks the script in a minute or two

Weights: random, of the presets' true shapes, written once into `--workdir/models/` as the files a user
downloads, then read through the presets' `path`s by the same loaders: an HF directory for the LLM (safetensors
in `model.llm.dtype`; its tokenizer a byte-level BPE trained on the corpus's transcripts, as no Llama tokenizer
exists offline: pass `--tokenizer DIR` to use a real one), an HF Whisper directory, and an AV-HuBERT `.pt` in
the official fairseq layout (`weight_g`/`weight_v`, cfg with the head count). `--weights arch` builds every
model from its architecture instead (`model.llm.allow_random_weights`, the character tokenizer). The corpus is a
small `mome synth` corpus in `--workdir/corpus` (or `--corpus`, e.g. one with longer clips).

Each phase runs in its own process, so that its peak RSS (VmHWM, what the out-of-memory killer sees) is its own:

    train         `--steps` steps (after `--warmup`) of `Trainer.train_step`, the step of `mome train`: media
                  decoded by the loader, the frozen encoders run in the step
    train-cache   the same steps reading `data.feature_cache`; the fill before them (train and val splits) is
                  timed, and each encoder's store is measured: bytes per second of speech of one entry
    train-pooled  the same with `data.feature_cache_store=pooled` (its own store, filled likewise)
    decode        one test utterance through the Recognizer of `mome.load` at the finest rates, greedy and then
                  with the preset's `decode.num_beams`, each one's peak measured from its own start
                  (`/proc/self/clear_refs`), and how far it rose above the RSS before it

The cache lives in `--workdir/features` and is shared by the presets (same encoders, same entries): only the
first preset fills it. A random LLM never emits EOS, so every decode runs `decode.max_new_tokens` steps.
Prints one table (s/step, the cache's speed-up, peaks in GB = 1e9 bytes) and writes the details with `--json`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mome.constants import FPS

PRESETS = ["paper-mome-23-4-mhsa", "paper-mtsk-ms", "paper-llama-avsr"]
PHASES = ("train", "train-cache", "train-pooled", "decode")
TINY_LLM = dict(
    model_type="llama",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=512,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)
TINY_WHISPER = dict(
    d_model=64,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_ffn_dim=128,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=128,
    num_mel_bins=80,
    max_source_positions=1500,
    vocab_size=51865,
)
BPE_VOCAB = 2000
"""Largest BPE vocabulary trained on the corpus (a small corpus reaches whole words well before it)."""


# ------------------------------------------------------------------------------------------ memory
def _status(field: str) -> float:
    """A /proc/self/status field (VmRSS, VmHWM) in GB (1e9 bytes); nan where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return math.nan


def rss_gb() -> float:
    return _status("VmRSS")


def peak_gb() -> float:
    """The peak RSS since the process started or since the last `reset_peak`."""
    return _status("VmHWM")


def reset_peak() -> bool:
    """Start the peak RSS again from the current RSS (Linux >= 4.0); False where it cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ configs
def size_overrides(tiny: bool) -> list[Any]:
    """Overrides that shrink every size of a paper preset (`--tiny`); none at the true size."""
    if not tiny:
        return []
    return [
        ("model.llm.arch", TINY_LLM),
        ("model.llm.hidden_size", TINY_LLM["hidden_size"]),
        "model.projector.hidden_size=32",
        ("model.encoders.audio.arch", TINY_WHISPER),
        'model.encoders.video.arch={"name": "tiny"}',
    ]


def models_key(cfg: Any, weights: str, tokenizer: str | None) -> str:
    """The models directory of a config's shapes: presets of the same shapes share their files."""
    m = cfg.model
    shapes = [m.llm.arch, m.llm.dtype, m.encoders.audio.arch, m.encoders.video.arch, weights, tokenizer]
    return hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:12]


def run_config(preset: str, args: argparse.Namespace, workdir: Path, corpus: Path, models: Path | None) -> Any:
    """The preset at its size, on the corpus, loading the written models (or from arch, `--weights arch`)."""
    from mome.config import load_config

    overrides = size_overrides(args.tiny) + [
        ("data.root", corpus),
        ("data.feature_cache", workdir / "features"),
        ("train.num_threads", args.threads),
    ]
    if models is None:
        overrides += ["model.llm.allow_random_weights=true"]
    else:
        overrides += [
            ("model.llm.path", models / "llm"),
            ("model.encoders.audio.path", models / "whisper"),
            ("model.encoders.video.path", models / "avhubert.pt"),
        ]
    return load_config(preset, overrides)


# ------------------------------------------------------------------------------------------ files
def synth_corpus(out: Path, train: int) -> Path:
    """A `mome synth` corpus with at least `train` training utterances, two for validation and two for test."""
    from mome.synthetic.corpus import synthesize_corpus

    if (out / "labels" / "train.csv").is_file():
        return out
    total = train + 4
    synthesize_corpus(
        out,
        total,
        seed=0,
        split_fractions={"train": train / total, "val": 2 / total, "test": 2 / total},
        speakers_per_split={"train": 2, "val": 1, "test": 1, "noise": 2},
        babble_seconds=20.0,
        babble_talkers=3,
        workers=1,
        progress=False,
    )
    return out


def train_tokenizer(texts: list[str], vocab: int) -> Any:
    """A byte-level BPE (as Llama 3's) trained on `texts`: about one token per word of the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=specials[0], eos_token=specials[1])


def official_avhubert(model: Any) -> dict[str, Any]:
    """An AV-HuBERT encoder as the released fairseq trainer pickle holds it (weight norm as weight_g/weight_v,
    the head count in cfg), which `load_avhubert` reads through its weights-only path."""
    from mome.models.avhubert_checkpoint import POS_CONV

    state = {k: v for k, v in model.state_dict().items() if ".lora_" not in k}
    state[POS_CONV + "weight_g"] = state.pop(POS_CONV + "parametrizations.weight.original0")
    state[POS_CONV + "weight_v"] = state.pop(POS_CONV + "parametrizations.weight.original1")
    heads = model.arch.heads
    return {
        "args": None,
        "cfg": {
            "model": {"_name": "av_hubert", "encoder_attention_heads": heads},
            "task": {"_name": "av_hubert_pretraining"},
        },
        "model": state,
        "optimizer_history": [],
        "extra_state": {},
    }


def write_models(cfg: Any, out: Path, tokenizer_dir: str | None) -> dict[str, Any]:
    """Random weights of `cfg`'s shapes as an LLM directory, a Whisper directory and an AV-HuBERT `.pt`."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    from mome.data.labels import read_labels
    from mome.models.avhubert import build_avhubert
    from mome.models.llm import load_config as llm_config
    from mome.precision import TORCH_DTYPES

    torch.manual_seed(0)
    start = time.perf_counter()
    llm = llm_config(cfg.model.llm)
    if tokenizer_dir:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        texts = [
            r.transcript
            for split in ("train", "val", "test")
            for r in read_labels(getattr(cfg.data, f"{split}_labels"))[0]
        ]
        tokenizer = train_tokenizer(texts, min(BPE_VOCAB, llm.vocab_size - 8))
    llm.bos_token_id, llm.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id  # as a real checkpoint
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_config(llm, dtype=TORCH_DTYPES[cfg.model.llm.dtype])
    model.save_pretrained(tmp / "llm", max_shard_size="1GB")  # small shards: serialised one at a time
    tokenizer.save_pretrained(tmp / "llm")
    del model
    gc.collect()
    whisper_cfg = WhisperConfig(**cfg.model.encoders.audio.arch)
    whisper = WhisperForConditionalGeneration(whisper_cfg)
    whisper.save_pretrained(tmp / "whisper", max_shard_size="1GB")
    WhisperFeatureExtractor(feature_size=whisper_cfg.num_mel_bins).save_pretrained(tmp / "whisper")
    del whisper
    gc.collect()
    torch.save(official_avhubert(build_avhubert(cfg.model.encoders.video.arch)), tmp / "avhubert.pt")
    os.replace(tmp, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"seconds": time.perf_counter() - start, "bytes": size, "tokenizer": len(tokenizer)}


# ------------------------------------------------------------------------------------------ phases
class FixedBatches:
    """`size` utterances per batch, drawn without replacement and reshuffled each pass, for ever: the
    frame-budget sampler of `mome train` would give a different count per step."""

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        self.n, self.size, self.rng = n, size, random.Random(seed)

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self) -> Iterator[list[int]]:
        order: list[int] = []
        while True:
            while len(order) < self.size:
                order += self.rng.sample(range(self.n), self.n)
            yield order[: self.size]
            order = order[self.size :]

    def __len__(self) -> int:
        return 1 << 30


def phase_train(cfg: Any, args: argparse.Namespace, cached: bool, pooled: bool = False) -> dict[str, Any]:
    """Timed steps of the recipe; with the cache, its fill and what it stores per second of speech."""
    from mome.training.recipe import Trainer

    if not cached:
        cfg.data.feature_cache = None
    else:  # both stores side by side, whatever the preset keeps
        cfg.data.feature_cache_store = "pooled" if pooled else "full"
    fill: dict[str, Any] = {}

    class TimedTrainer(Trainer):
        def _fill_feature_cache(self) -> None:
            """The fill of `mome train`, with each split's utterances, clips and seconds recorded."""
            cache_fill = self.cache.fill

            def recorded(labels: Any, *a: Any, **kw: Any) -> Any:
                stats = cache_fill(labels, *a, **kw)
                fill[Path(labels).stem] = {
                    "utterances": stats.utterances,
                    "clips": stats.clips,
                    "seconds": stats.seconds,
                }
                return stats

            self.cache.fill = recorded
            start = time.perf_counter()
            super()._fill_feature_cache()
            fill["seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    trainer = TimedTrainer(cfg, resume=False).setup()
    setup_s = time.perf_counter() - start
    setup_peak = peak_gb()
    trainer.sampler = FixedBatches(len(trainer.train_set), args.utterances_per_step)
    batches = trainer.epoch_batches()
    resident = rss_gb()
    reset = reset_peak()
    times, speech = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        marked = next(batches)
        if marked["batch"] is None:
            raise RuntimeError(f"no utterance of the batch could be read: {marked['failed']}")
        trainer.train_step(marked["batch"])
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            batch = marked["batch"]
            frames = batch.get("video_lengths", batch.get("video_features_lengths"))
            speech.append(float(frames.sum()) / FPS if frames is not None else math.nan)
    result = {
        "s_per_step": sorted(times)[len(times) // 2],
        "steps_s": times,
        "speech_s_per_step": speech,
        "setup_s": setup_s,
        "setup_peak_gb": setup_peak,
        "resident_gb": resident,
        "steps_peak_gb": peak_gb() if reset else math.nan,
        "precision": trainer.precision.precision,
    }
    if cached:
        result["fill"] = fill
        result["store"] = store_sizes(trainer.cache, trainer.train_set)
    return result


def store_sizes(cache: Any, train_set: Any) -> dict[str, Any]:
    """Per encoder: entries, bytes on disk, and bytes per second of speech of one entry (fp16 rows of D)."""
    out = {}
    for modality, store in cache.stores.items():
        rows = sum(entry[2] for entry in store.entries.values())
        frames = sum(entry[3].get("frames", entry[2]) for entry in store.entries.values())  # pooled: fewer rows
        key = next(iter(store.entries))
        dim = store.get(key)[0].shape[1]
        out[modality] = {
            "entries": len(store),
            "dim": dim,
            "frame_rate": cache.frame_rates[modality],
            "disk_bytes": store.size_bytes(),
            "bytes_per_second": rows * dim * 2 / (frames / cache.frame_rates[modality]),
            "versions_per_train_utterance": len(cache.conditions("train")) if modality == "audio" else 1,
        }
    return out


def phase_decode(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One test utterance decoded greedily, then with the preset's beams, by `mome.load`'s Recognizer."""
    from mome.data.labels import media_path, read_labels
    from mome.inference.api import Recognizer
    from mome.models.avsr import build_model

    rows, _ = read_labels(cfg.data.test_labels)
    row = rows[0]
    video, audio = (media_path(Path(cfg.data.root), row.rel_path, ext) for ext in (".mp4", ".wav"))
    start = time.perf_counter()
    recognizer = Recognizer(build_model(cfg.model), cfg, None)
    out: dict[str, Any] = {
        "load_s": time.perf_counter() - start,
        "load_peak_gb": peak_gb(),
        "clip_s": row.input_length / FPS,
        "precision": recognizer.precision.precision,
    }
    beams, tokens = cfg.decode.num_beams, cfg.decode.max_new_tokens
    cfg.decode.num_beams, cfg.decode.max_new_tokens = 1, 2
    recognizer.transcribe(video, audio)  # warm-up: kernels and allocator
    cfg.decode.max_new_tokens = tokens
    for name, width in (("greedy", 1), ("beam", beams)):
        cfg.decode.num_beams = width
        gc.collect()
        resident = rss_gb()
        reset = reset_peak()
        start = time.perf_counter()
        result = recognizer.transcribe(video, audio)
        out[name] = {
            "beams": width,
            "s": time.perf_counter() - start,
            "decode_s": result.seconds.get("decode"),
            "rates": result.rates,
            "new_tokens": tokens,
            "peak_gb": peak_gb() if reset else math.nan,
            "rise_gb": peak_gb() - resident if reset else math.nan,
        }
    return out


def child(args: argparse.Namespace) -> None:
    """One phase in this process; its result and peak RSS as JSON in `--_out`."""
    import torch

    from mome.config import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(args._config)
    if args._child == "write":
        result = write_models(cfg, Path(args._models), args.tokenizer)
    elif args._child == "decode":
        result = phase_decode(cfg, args)
    else:
        result = phase_train(cfg, args, cached=args._child != "train", pooled=args._child == "train-pooled")
    result["process_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    Path(args._out).write_text(json.dumps(result, indent=2))


def run_child(
    phase: str, config: Path, out: Path, args: argparse.Namespace, env: dict, models: Path | None = None
) -> dict:
    """Run one phase in a fresh process; its JSON result (an `error` entry if it failed)."""
    command = [
        sys.executable,
        __file__,
        "--_child",
        phase,
        "--_config",
        str(config),
        "--_out",
        str(out),
        "--threads",
        str(args.threads),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--utterances-per-step",
        str(args.utterances_per_step),
    ]
    if models is not None:
        command += ["--_models", str(models)]
    if args.tokenizer:
        command += ["--tokenizer", args.tokenizer]
    out.unlink(missing_ok=True)
    print(f"--- {phase}: {config.stem}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env)
    if proc.returncode != 0 or not out.is_file():
        killed = " (killed, e.g. out of memory)" if proc.returncode in (-9, 137) else " (its traceback is above)"
        return {"error": f"exit code {proc.returncode}{killed}"}
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------ report
def _f(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def table(results: list[dict[str, Any]]) -> str:
    heads = [
        "preset",
        "speech s",
        "s/step",
        "cached",
        "speed-up",
        "pooled",
        "peak GB",
        "cached peak",
        "fill s/utt",
        "greedy s",
        "greedy peak",
        "beam s",
        "beams",
        "beam peak",
        "beam rise",
        "audio B/s full/pooled",
        "video B/s full/pooled",
    ]
    rows = []
    for r in results:
        train, cached, pooled, decode = (r["phases"].get(p, {}) for p in PHASES)
        filled = cached.get("fill", {}).get("train", {})
        fill_per = filled["seconds"] / filled["utterances"] if filled.get("utterances") else None
        stores = cached.get("store", {}), pooled.get("store", {})
        greedy, beam = decode.get("greedy", {}), decode.get("beam", {})
        speedup = train.get("s_per_step", math.nan) / cached.get("s_per_step", math.nan)
        rows.append(
            [
                r["preset"],
                _f(_mean(train.get("speech_s_per_step") or cached.get("speech_s_per_step")), ".1f"),
                _f(train.get("s_per_step"), ".2f"),
                _f(cached.get("s_per_step"), ".2f"),
                _f(speedup, ".2f") + ("x" if not math.isnan(speedup) else ""),
                _f(pooled.get("s_per_step"), ".2f"),
                _f(train.get("process_peak_gb"), ".1f"),
                _f(cached.get("process_peak_gb"), ".1f"),
                _f(fill_per, ".1f"),
                _f(greedy.get("s"), ".2f"),
                _f(greedy.get("peak_gb"), ".1f"),
                _f(beam.get("s"), ".2f"),
                _f(beam.get("beams"), "d"),
                _f(beam.get("peak_gb"), ".1f"),
                _f(beam.get("rise_gb"), ".2f"),
                *(
                    "/".join(_f(st.get(m, {}).get("bytes_per_second"), ",.0f") for st in stores)
                    for m in ("audio", "video")
                ),
            ]
        )
        for phase, value in [("write", r.get("write", {})), *r["phases"].items()]:
            if "error" in value:
                rows[-1][0] += f" ({phase}: {value['error']})"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    return "\n".join(lines)


def machine() -> str:
    import torch

    from mome.precision import resolve_precision

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    auto = resolve_precision("auto", torch.device("cpu"))
    return (
        f"{cpu}, {os.cpu_count()} cores, {total:.0f} GB RAM; torch {torch.__version__}; "
        f"precision auto -> {auto.precision} ({auto.reason})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help=f"a paper preset, repeatable (default: {', '.join(PRESETS)})")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--utterances-per-step", type=int, default=1)
    parser.add_argument("--skip-train", action="store_true", help="no training phases")
    parser.add_argument("--skip-decode", action="store_true", help="no decoding phase")
    parser.add_argument("--skip-pooled", action="store_true", help="no training phase with a pooled cache")
    parser.add_argument("--tiny", action="store_true", help="shrink every size (a check of the script)")
    parser.add_argument(
        "--weights",
        choices=("files", "arch"),
        default="files",
        help="files: random checkpoints read through the paths (default); arch: built from arch",
    )
    parser.add_argument("--tokenizer", help="an HF tokenizer directory for the LLM (default: BPE on the corpus)")
    parser.add_argument("--corpus", help="a `mome synth` / prepared corpus (default: a small synthetic one)")
    parser.add_argument("--workdir", help="models, corpus, cache and runs; kept (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the results here")
    for hidden in ("--_child", "--_config", "--_out", "--_models"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        return child(args)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="paper_scale-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MOME_CACHE": str(workdir / "mome-cache")}  # base-model hashes and conversions stay here
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")])
    train_utterances = (args.warmup + args.steps) * args.utterances_per_step
    corpus = Path(args.corpus).resolve() if args.corpus else synth_corpus(workdir / "corpus", train_utterances)
    skipped = {
        "train": args.skip_train,
        "train-cache": args.skip_train,
        "decode": args.skip_decode,
        "train-pooled": args.skip_train or args.skip_pooled,
    }
    phases = [p for p in PHASES if not skipped[p]]
    results = []
    for preset in args.preset or PRESETS:
        from mome.config import save_config

        entry: dict[str, Any] = {"preset": preset, "phases": {}}
        models = None
        if args.weights == "files":
            shapes = run_config(preset, args, workdir, corpus, None)
            models = workdir / "models" / models_key(shapes, args.weights, args.tokenizer)
            if not models.is_dir():
                models.parent.mkdir(parents=True, exist_ok=True)
                config = workdir / "configs" / f"{preset}-shapes.yaml"
                config.parent.mkdir(parents=True, exist_ok=True)
                save_config(shapes, config)
                entry["write"] = run_child("write", config, workdir / "write.json", args, env, models)
                if "error" in entry["write"]:
                    results.append(entry)
                    continue
        cfg = run_config(preset, args, workdir, corpus, models)
        for phase in phases:
            cfg.train.output_dir = str(workdir / "runs" / f"{preset}-{phase}")
            shutil.rmtree(cfg.train.output_dir, ignore_errors=True)
            config = workdir / "configs" / f"{preset}-{phase}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            save_config(cfg, config)
            entry["phases"][phase] = run_child(phase, config, workdir / f"{phase}.json", args, env)
        results.append(entry)

    print(f"\n{machine()}")
    print(
        f"{args.threads} threads; {args.utterances_per_step} utterance(s) per step, median of {args.steps} steps "
        f"after {args.warmup}; corpus {corpus}; weights {args.weights}{' (tiny)' if args.tiny else ''}"
    )
    print(table(results))
    print(
        "speech s: seconds of speech per step; peak: the process's peak RSS (GB); greedy/beam peak: from the start "
        "of that decode; rise: above the RSS before it; fill s/utt: the cache fill's seconds per training utterance "
        "(every audio version and the video; - where the cache was filled already); B/s: bytes per second of speech "
        "of one cached entry (one audio version)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "results": results}, indent=2))
    if not args.workdir:
        print(f"workdir kept for inspection: {workdir} (remove it when done)")


if __name__ == "__main__":
    main()
