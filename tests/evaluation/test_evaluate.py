"""`evaluate` on a tiny synthetic corpus with an untrained tiny checkpoint: files, table shape, determinism."""

import json

import pytest
import torch

from mome.config import load_config
from mome.errors import UserError
from mome.evaluation.evaluate import dataset_errors, evaluate, parse_snr, tokens_per_second
from mome.models.avsr import build_model
from mome.runs.checkpoint import save_checkpoint
from mome.runs.load import model_from_checkpoint
from mome.synthetic.corpus import synthesize_corpus
from tiny import TINY_CORPUS, autocast_spy

FAST = ["data.num_workers=0", "decode.num_beams=1", "decode.max_new_tokens=4", "train.seed=3", "decode.batch_size=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(corpus root, checkpoint path) of a random tiny model, saved as training would (seed, then build)."""
    root = tmp_path_factory.mktemp("corpus")
    assert synthesize_corpus(root, 8, seed=5, **TINY_CORPUS)["written"] == 8
    cfg = load_config("tiny", [f"data.root={root}", *FAST])
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    path = save_checkpoint(tmp_path_factory.mktemp("run") / "checkpoints", 0, model.trainable_state_dict(), cfg, {})
    return root, path


def _evaluate(run, out, overrides=()):
    root, path = run
    model, cfg = model_from_checkpoint(path, [*FAST, *overrides])
    return evaluate(
        model,
        cfg,
        "labels/train.csv",
        root,
        model.combinations,
        [None, 0.0],
        out_dir=out,
        progress=False,
        info={"checkpoint": "ckpt"},
    )


def test_writes_tables_plot_and_hypotheses(run, tmp_path):
    results = _evaluate(run, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"results.json", "results.md", "wer_vs_tokens.png", "hypotheses.jsonl", "decode_times.json"}
    keys = ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    assert [c.key for c in results.combinations] == keys
    assert results.snrs == ("clean", "0")
    # groups from the corpus metadata: every utterance is in `all` and in one grammar and one engine group
    assert results.groups[0] == "all" and any(g.startswith("grammar=") for g in results.groups)
    assert any(g.startswith("engine=") for g in results.groups)
    n = results.wer["all"]["a4_v2"]["clean"].utterances
    assert n == 4 and not results.skipped
    for kind in ("grammar", "engine"):
        assert sum(results.wer[g]["a4_v2"]["0"].utterances for g in results.groups if g.startswith(kind + "=")) == n
    assert json.loads((tmp_path / "results.json").read_text()) == results.to_json()  # the file is what returned
    md = (tmp_path / "results.md").read_text().splitlines()
    for group in results.groups:
        at = md.index(f"## {group}")
        assert md[at + 2] == "| rates | tokens/s | clean | 0 dB |"
        rows = [line for line in md[at + 4 : at + 4 + len(keys)]]
        assert [r.split(" | ")[0].strip("| ") for r in rows] == keys
    hyps = [json.loads(line) for line in (tmp_path / "hypotheses.jsonl").read_text().splitlines()]
    assert len(hyps) == 2 * len(keys) * n
    assert {"id", "ref", "hyp", "sub", "del", "ins", "ref_words", "snr", "rates"} <= set(hyps[0])
    assert (tmp_path / "wer_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    times = json.loads((tmp_path / "decode_times.json").read_text())
    assert times["utterances"] == {k: 2 * n for k in keys}  # every utterance at both SNRs, per combination
    assert set(times["seconds_per_utterance"]) == set(keys) and min(times["seconds_per_utterance"].values()) > 0


def test_tokens_per_second_definition(run):
    model, _ = model_from_checkpoint(run[1], FAST)
    assert tokens_per_second(model, (16, 5)) == 50 / 16 + 25 / 5
    assert tokens_per_second(model, (4, None)) == 12.5


def test_two_runs_give_identical_results(run, tmp_path):
    """Same checkpoint twice, the second time with two DataLoader workers: identical bytes, noisy SNR included."""
    _evaluate(run, tmp_path / "a")
    _evaluate(run, tmp_path / "b", ["data.num_workers=2"])
    for name in ("results.json", "hypotheses.jsonl", "results.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a = [json.loads(x) for x in (tmp_path / "a" / "hypotheses.jsonl").read_text().splitlines()]
    assert {h["snr"] for h in a} == {"clean", "0"}


def test_hypotheses_do_not_depend_on_the_batch_size(run, tmp_path):
    """The same clips decoded one at a time and eight at a time give the same hypotheses, in the same order
    (batch-invariant encoders, left-padded decoding)."""
    root, path = run
    hypotheses = {}
    for batch_size in (1, 8):
        # a random LLM with wide weights makes confident, input-dependent predictions (tests/tiny.py)
        overrides = [*FAST, "model.llm.arch.initializer_range=0.5", f"decode.batch_size={batch_size}"]
        model, cfg = model_from_checkpoint(path, overrides)
        out = tmp_path / f"b{batch_size}"
        evaluate(model, cfg, "labels/train.csv", root, model.combinations, [None, 0.0], out_dir=out, progress=False)
        hypotheses[batch_size] = [json.loads(line) for line in (out / "hypotheses.jsonl").read_text().splitlines()]
    assert len(hypotheses[1]) == 4 * 2 * 4  # 4 utterances x 2 SNRs x 4 combinations
    assert len({h["hyp"] for h in hypotheses[1]}) > 4, "a near-constant output would prove nothing"
    confidences = {b: [h.pop("confidence") for h in hyps] for b, hyps in hypotheses.items()}
    assert hypotheses[8] == hypotheses[1]
    assert confidences[8] == pytest.approx(confidences[1], abs=1e-4)  # float sums in another order


def test_dataset_errors_count_what_evaluate_counts(run, tmp_path):
    """The training recipe's validation WER (`dataset_errors`) is `evaluate`'s decoding: the same edit counts
    per combination, clean, with the model's layout and the files left alone."""
    from mome.features.dataset import make_dataset
    from mome.precision import resolve_precision

    root, path = run
    model, cfg = model_from_checkpoint(path, [*FAST, "model.llm.arch.initializer_range=0.5"])
    counts, skipped = dataset_errors(
        model,
        cfg,
        make_dataset(cfg, root / "labels/train.csv", root, False, None),
        model.combinations,
        cfg.decode,
        resolve_precision("fp32", "cpu"),
        limit=3,
    )
    results = evaluate(model, cfg, "labels/train.csv", root, model.combinations, [None], limit=3, progress=False)
    assert not skipped and list(counts) == [c.key for c in results.combinations]
    for key, c in counts.items():
        cell = results.wer["all"][key]["clean"]
        assert (c.substitutions, c.deletions, c.insertions, c.ref_words) == (
            cell.substitutions,
            cell.deletions,
            cell.insertions,
            cell.ref_words,
        ), key
    assert sum(c.substitutions + c.insertions for c in counts.values()) > 0, "empty outputs would prove nothing"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("flags", "expected"), [("avx2 avx512_bf16", "bf16"), ("avx2", "fp32")])
def test_results_record_the_decode_precision_that_ran(run, tmp_path, monkeypatch, flags, expected):
    """`decode.precision=auto` follows the CPU's bf16 support (replaced here); encoding and generation run under
    that autocast, and results.json says which, with the reason."""
    import mome.precision

    monkeypatch.setattr(mome.precision, "read_cpuinfo", lambda: f"flags\t: {flags}\n")
    root, path = run
    model, cfg = model_from_checkpoint(path, [*FAST, "decode.precision=auto"])
    seen = autocast_spy(model, monkeypatch)
    evaluate(
        model, cfg, "labels/train.csv", root, model.combinations[:2], [None], out_dir=tmp_path, limit=2, progress=False
    )
    decode = json.loads((tmp_path / "results.json").read_text())["decode"]
    assert decode["precision"] == expected and decode["precision_reason"].startswith("auto: this CPU has ")
    assert len(seen) == 3 and set(seen) == {torch.bfloat16 if expected == "bf16" else None}  # 1 encode, 2 generate
    assert f"beams 1, precision {expected};" in (tmp_path / "results.md").read_text()
    # bf16 decoding reads the frozen LLM stored in bf16 (no per-call cast); fp32 leaves it as built
    assert {p.dtype for p in model.llm.parameters()} == {torch.bfloat16 if expected == "bf16" else torch.float32}
    assert {p.dtype for p in model.trainable_parameters()} == {torch.float32}


def test_int8_decoding_is_applied_and_recorded(run, tmp_path):
    """`decode.quantize=int8`: `evaluate` quantises the frozen LLM before decoding, runs in fp32 and says so in
    results.json and results.md."""
    root, path = run
    model, cfg = model_from_checkpoint(path, [*FAST, "decode.quantize=int8"])
    evaluate(
        model, cfg, "labels/train.csv", root, model.combinations[:1], [None], out_dir=tmp_path, limit=2, progress=False
    )
    fp32 = {n.rsplit(".", 1)[-1] for n, m in model.llm.named_modules() if isinstance(m, torch.nn.Linear)}
    assert fp32 == {"down_proj"}  # every other linear layer in int8 (`quantize.KEPT_FP32`)
    decode = json.loads((tmp_path / "results.json").read_text())["decode"]
    assert (decode["precision"], decode["quantize"]) == ("fp32", "int8")
    assert decode["precision_reason"] == "as requested; linear layers in int8"  # the tiny preset pins fp32
    assert "beams 1, precision fp32, int8 weights;" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e9"])
def test_a_nonfinite_or_implausible_snr_is_refused(text: str) -> None:
    with pytest.raises(UserError, match=r"SNR .* dB: expected a number from -30 to 60 dB, or 'clean'"):
        parse_snr(text)


def test_evaluate_refuses_a_nan_snr_before_any_work() -> None:
    with pytest.raises(UserError, match="SNR nan dB"):
        evaluate(None, None, "labels.csv", "root", [], [None, float("nan")])  # type: ignore[arg-type]


def test_clean_and_numbers_still_parse() -> None:
    assert [parse_snr(t) for t in ("clean", "none", "0", "-5", "2.5")] == [None, None, 0.0, -5.0, 2.5]
