"""The WER figures (`mome.evaluation.plots`) of `mome eval`, the demo's and the reproduction's reports: the lines
(label, points, colour, style, marker), the labels at points, titles, axis labels and legends of each figure
as saved, and the shared figure drawing exactly the series it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from mome.evaluation import plots
from mome.evaluation.evaluate import plot as eval_plot
from mome.evaluation.results import (
    CascadeScore,
    DecodeSettings,
    EvaluationResult,
    PolicyScores,
    RateCombination,
    WerCell,
)
from mome.workflows.demo_report import plot as demo_plot
from mome.workflows.reproduce_report import MethodResult, curve_plot
from mome.workflows.reproduce_report import plot as reproduce_plot

TOKENS = "LLM input tokens per second of speech"
BLUE, ORANGE, GREEN = "#1f77b4", "#ff7f0e", "#2ca02c"  # C0, C1, C2 (tab:blue, tab:orange, tab:green)


def tab20(i: int) -> str:
    return to_hex(matplotlib.colormaps["tab20"].colors[i])


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """The figures saved while the test runs (each also written), each saved without a version stamp."""
    figures, original = [], Figure.savefig

    def record(self, *args, **kwargs):
        assert kwargs.get("metadata") == {"Software": None}
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def line(label, points, colour, style="-", marker="o", width=1.5, size=6.0) -> tuple:
    return label, points, colour, style, marker, width, size


def content(fig: Figure) -> dict[str, Any]:
    """What a reader sees, axes by axes; lines without a legend label have label None."""
    axes = []
    for ax in fig.axes:
        legend = ax.get_legend()
        axes.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "lines": [
                    line(
                        None if (lab := ln.get_label()).startswith("_") else lab,
                        list(zip(map(float, ln.get_xdata()), map(float, ln.get_ydata()))),
                        to_hex(ln.get_color()),
                        ln.get_linestyle(),
                        ln.get_marker(),
                        ln.get_linewidth(),
                        ln.get_markersize(),
                    )
                    for ln in ax.get_lines()
                ],
                "notes": [(t.get_text(), tuple(map(float, t.xy))) for t in ax.texts],
                "legend": None
                if legend is None
                else ([t.get_text() for t in legend.get_texts()], legend.get_title().get_text()),
            }
        )
    return {
        "axes": axes,
        "suptitle": fig.get_suptitle(),
        "figure_legends": [[t.get_text() for t in leg.get_texts()] for leg in fig.legends],
    }


def test_eval_figure(saved, tmp_path: Path) -> None:
    def cell(wer: float) -> WerCell:
        return WerCell(wer, errors=0, ref_words=0, substitutions=0, deletions=0, insertions=0, utterances=1)

    results = EvaluationResult(
        name="run1",
        task="avsr",
        decode=DecodeSettings(1, 4, 1.0, "fp32", "as requested"),
        eval_noise_seed=0,
        snrs=("clean", "0"),
        combinations=(RateCombination("a4_v2", 4, 2, 25.0), RateCombination("a16_v5", 16, 5, 8.125)),
        groups=("all",),
        wer={
            "all": {"a4_v2": {"clean": cell(0.125), "0": cell(0.375)}, "a16_v5": {"clean": cell(0.25), "0": cell(0.5)}}
        },
        skipped={},
        label_problems=(),
        labels="labels.csv",
        root="corpus",
        policies={
            "cascade": PolicyScores(
                -1.0,
                ("a16_v5", "a4_v2"),
                {"clean": CascadeScore(0.1875, 12.0, {}), "0": CascadeScore(0.4375, 20.0, {})},
            )
        },
    )
    eval_plot(results, tmp_path / "wer.png")
    assert (tmp_path / "wer.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = saved
    assert content(fig) == {
        "axes": [
            {
                "title": "run1",
                "xlabel": TOKENS,
                "ylabel": "WER (%)",
                "lines": [
                    line("clean", [(8.125, 25.0), (25.0, 12.5)], BLUE),
                    line("cascade clean", [(12.0, 18.75)], BLUE, "None", "*", size=12.0),
                    line("0 dB", [(8.125, 50.0), (25.0, 37.5)], ORANGE),
                    line("cascade 0 dB", [(20.0, 43.75)], ORANGE, "None", "*", size=12.0),
                ],
                "notes": [("a16_v5", (8.125, 25.0)), ("a4_v2", (25.0, 12.5))],
                "legend": (["clean", "cascade clean", "0 dB", "cascade 0 dB"], "SNR"),
            }
        ],
        "suptitle": "",
        "figure_legends": [],
    }


def test_demo_figure(saved, tmp_path: Path) -> None:
    summary = {
        "avsr": {"a4_v2": {"clean": 10.0, "0": 20.0}, "a16_v5": {"clean": 30.0, "0": None}},
        "vsr": {"v2": {"clean": 50.0, "0": None}},
        "tokens_per_second": {"avsr": {"a4_v2": 25.0, "a16_v5": 8.125}, "vsr": {"v2": 12.5}},
    }
    demo_plot(summary, ["clean", "0"], tmp_path / "wer.png")
    (fig,) = saved
    assert content(fig) == {
        "axes": [
            {
                "title": "mome demo: WER against compression rate",
                "xlabel": TOKENS,
                "ylabel": "WER (%)",
                "lines": [
                    line("AVSR clean", [(8.125, 30.0), (25.0, 10.0)], BLUE),
                    line("AVSR 0 dB", [(25.0, 20.0)], BLUE, ":"),
                    line("VSR clean", [(12.5, 50.0)], GREEN),
                ],
                "notes": [("a16_v5", (8.125, 30.0)), ("a4_v2", (25.0, 10.0)), ("v2", (12.5, 50.0))],
                "legend": (["AVSR clean", "AVSR 0 dB", "VSR clean"], ""),
            }
        ],
        "suptitle": "",
        "figure_legends": [],
    }


def test_reproduce_figure(saved, tmp_path: Path) -> None:
    tokens = {"a4_v2": 25.0, "a16_v5": 8.125}
    methods = [
        MethodResult(
            "mome-mhsa",
            "MoME MHSA",
            "mome",
            tokens_per_second=tokens,
            wer={"a4_v2": {"clean": 10.0, "0": 20.0}, "a16_v5": {"clean": 30.0, "0": 40.0}},
        ),
        MethodResult("asr", "ASR", "asr", tokens_per_second={"a4": 12.5}, wer={"a4": {"clean": 5.0, "0": 9.0}}),
        MethodResult(
            "mtsk-ms",
            "MTSK",
            "mtsk",
            tokens_per_second=tokens,
            wer={"a4_v2": {"clean": 15.0}, "a16_v5": {"clean": 35.0, "0": None}},
        ),
        MethodResult(
            "llama",
            "Llama-AVSR",
            "llama-avsr",
            tokens_per_second={"a4_v2": 25.0},
            wer={"a4_v2": {"clean": 12.0, "0": 22.0}},
        ),
    ]
    reproduce_plot(methods, tmp_path / "wer.png")
    (fig,) = saved
    assert content(fig) == {
        "axes": [
            {
                "title": "clean",
                "xlabel": TOKENS,
                "ylabel": "WER (%)",
                "lines": [
                    line("MoME MHSA", [(8.125, 30.0), (25.0, 10.0)], tab20(0), width=2.5),
                    line("MTSK", [(8.125, 35.0), (25.0, 15.0)], tab20(1), "--", width=1.0),
                    line("Llama-AVSR", [(25.0, 12.0)], tab20(2), width=1.0),
                ],
                "notes": [],
                "legend": None,
            },
            {
                "title": "babble 0 dB",
                "xlabel": TOKENS,
                "ylabel": "",
                "lines": [
                    line("MoME MHSA", [(8.125, 40.0), (25.0, 20.0)], tab20(0), width=2.5),
                    line("Llama-AVSR", [(25.0, 22.0)], tab20(2), width=1.0),
                ],
                "notes": [],
                "legend": None,
            },
        ],
        "suptitle": "mome reproduce: WER against compression",
        "figure_legends": [["MoME MHSA", "MTSK", "Llama-AVSR"]],
    }


def test_validation_curve_figure(saved, tmp_path: Path) -> None:
    methods = [
        MethodResult(
            "m1",
            "m1",
            "mome",
            curves={
                "r1": {"curve": [{"step": 10, "wer": 50.0}, {"step": 20, "wer": 40.0}], "stop": {"reason": "plateau"}},
                "r1-seed2": {"curve": [{"step": 10, "wer": 55.0}], "stop": None},
            },
        ),
        MethodResult("m2", "m2", "mome", curves={"r2": {"curve": [], "stop": None}}),
        MethodResult(
            "m3", "m3", "mome", curves={"r3": {"curve": [{"step": 10, "wer": 60.0}], "stop": {"reason": "cap"}}}
        ),
    ]
    curve_plot(methods, tmp_path / "curves.png")
    (fig,) = saved
    assert content(fig) == {
        "axes": [
            {
                "title": "mome reproduce: validation curves (star: plateau, square: cap)",
                "xlabel": "training step",
                "ylabel": "validation WER (%), mean of the rate combinations",
                "lines": [
                    line("r1", [(10.0, 50.0), (20.0, 40.0)], tab20(0), marker="None", width=1.2),
                    line(None, [(20.0, 40.0)], tab20(0), "None", "*", size=9.0),
                    line("r1-seed2", [(10.0, 55.0)], tab20(0), "--", marker="None", width=1.2),
                    line("r3", [(10.0, 60.0)], tab20(2), marker="None", width=1.2),
                    line(None, [(10.0, 60.0)], tab20(2), "None", "s", size=9.0),
                ],
                "notes": [],
                "legend": (["r1", "r1-seed2", "r3"], ""),
            }
        ],
        "suptitle": "",
        "figure_legends": [],
    }


def test_the_shared_figure_draws_the_series_it_is_given(tmp_path: Path) -> None:
    clean = plots.Panel(
        [
            plots.Series([(8.0, 30.0), (25.0, 10.0)], "ours", colour="tab:red"),
            plots.Series([(12.0, 20.0)], None, "", "tab:red", "*", marker_size=12),
        ],
        "clean",
        notes=[("a16_v5", (8.0, 30.0))],
    )
    noisy = plots.Panel([plots.Series([(8.0, 50.0)], "ours", "--", "tab:red", width=2.5)], "0 dB", xlabel="cost")
    fig = plots.figure([clean, noisy], size=(8, 4), title="both", legend={"ncol": 2})
    red = "#d62728"
    assert content(fig) == {
        "axes": [
            {
                "title": "clean",
                "xlabel": TOKENS,
                "ylabel": "WER (%)",
                "lines": [
                    line("ours", [(8.0, 30.0), (25.0, 10.0)], red),
                    line(None, [(12.0, 20.0)], red, "None", "*", size=12.0),
                ],
                "notes": [("a16_v5", (8.0, 30.0))],
                "legend": None,
            },
            {
                "title": "0 dB",
                "xlabel": "cost",
                "ylabel": "",
                "lines": [line("ours", [(8.0, 50.0)], red, "--", width=2.5)],
                "notes": [],
                "legend": None,
            },
        ],
        "suptitle": "both",
        "figure_legends": [["ours"]],  # the first panel's labelled lines, once
    }
    one = plots.figure([clean], size=(6, 4), legend={"title": "SNR"})
    assert content(one)["axes"][0]["legend"] == (["ours"], "SNR") and content(one)["figure_legends"] == []
    plots.save(one, tmp_path / "a.png")
    plots.plot([clean], tmp_path / "b.png", size=(6, 4), legend={"title": "SNR"})
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # no date or version inside
    plots.save(fig, tmp_path / "both.png")
