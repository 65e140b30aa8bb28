"""The one WER figure of mome's reports: WER lines against a cost (LLM input tokens per second of speech, or
training steps), in one panel or in panels side by side. `mome eval` (`evaluate.plot`), the demo's report and
the reproduction's report each turn their numbers into `Series` and `Panel`s; drawing and saving are here.

    plot([Panel([Series([(8.1, 30.0), (25.0, 12.5)], "clean")], title="run")], Path("wer.png"), size=(6, 4))

Saved at 120 dpi without matplotlib's version stamp (`metadata={"Software": None}`): the same numbers give
the same bytes. matplotlib is imported when a figure is drawn, not when a report module is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TOKENS_AXIS = "LLM input tokens per second of speech"
WER_AXIS = "WER (%)"
DPI = 120


@dataclass(frozen=True)
class Series:
    """One line of a panel, through `points` (x, y) in the order given."""

    points: Sequence[tuple[float, float]]
    label: str | None = None
    """In the legend; None: left out of it."""
    style: str = "-"
    """Line style ("-", "--", ":", "-."); "" draws the markers alone."""
    colour: Any = None
    """Any matplotlib colour; None: the next colour of the panel's cycle."""
    marker: str | None = "o"
    width: float | None = None
    """Line width; None: matplotlib's default."""
    marker_size: float | None = None


@dataclass(frozen=True)
class Panel:
    series: Sequence[Series]
    title: str = ""
    notes: Sequence[tuple[str, tuple[float, float]]] = field(default_factory=tuple)
    """Small texts beside points, e.g. the rate combination of each point of a line."""
    xlabel: str = TOKENS_AXIS


def tab20(i: int) -> tuple[float, float, float]:
    """The i-th colour of matplotlib's 20-colour palette (wrapping), for figures of many lines."""
    import matplotlib

    return matplotlib.colormaps["tab20"].colors[i % 20]


def figure(
    panels: Sequence[Panel],
    *,
    size: tuple[float, float],
    ylabel: str = WER_AXIS,
    title: str = "",
    legend: Mapping[str, Any] | None = None,
) -> Figure:
    """The panels side by side on one shared y axis. One panel carries its own legend; several share one
    legend below them (the first panel's lines) and `title` above them. `legend`: options of the legend
    (`matplotlib.axes.Axes.legend`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(1, len(panels), figsize=size, sharey=True, squeeze=False)
    axes = grid[0]
    for ax, panel in zip(axes, panels):
        for s in panel.series:
            xs, ys = zip(*s.points)
            ax.plot(
                xs,
                ys,
                linestyle=s.style or "none",
                marker=s.marker,
                color=s.colour,
                label=s.label,
                linewidth=s.width,
                markersize=s.marker_size,
            )
        for text, xy in panel.notes:
            ax.annotate(text, xy, textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    if len(axes) == 1:
        axes[0].legend(**(legend or {}))
        fig.tight_layout()
    else:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", **(legend or {}))
        fig.subplots_adjust(bottom=0.28)
    return fig


def save(fig: Figure, path: Path) -> None:
    """Write `fig` as a PNG with stable bytes and free it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)


def plot(panels: Sequence[Panel], path: Path, **options: Any) -> None:
    """`figure(panels, **options)` saved at `path`."""
    save(figure(panels, **options), path)
