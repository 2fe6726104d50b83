"""The sweep's figures: A* against each knob, A* against MVM error, the tolerance map.

These are Figs. 4B and 5B of Rasch et al. 2023; they draw with the generic helpers of
:mod:`analoglib.plotting` and take their labels, kinds and families from the registry.
"""

from __future__ import annotations

import math

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from analoglib.plotting import subplots
from analoglib.studies.nonideality_sensitivity.registry import get_nonideality

__all__ = ["plot_a_star_vs_mvm_error", "plot_sweep_a_star", "plot_tolerance_heatmap"]

#: Line style of each nonideality family in the equal-MVM-error comparison.
_FAMILY_STYLES = {"input/output": "-", "weight": "--", "other": ":"}


def _check_summary(summary: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(
            f"summary lacks the column(s) {', '.join(missing)}; pass the table of "
            "analoglib.studies.nonideality_sensitivity.summarize."
        )
    if summary.empty:
        raise ValueError("summary is empty: nothing to plot.")


def _ordered(values: pd.Series, wanted: list[str] | None) -> list[str]:
    present = [str(v) for v in pd.unique(values)]
    if wanted is None:
        return present
    return [w for w in wanted if w in present]


def plot_sweep_a_star(
    summary: pd.DataFrame,
    nonidealities: list[str] | None = None,
    workloads: list[str] | None = None,
    threshold: float = 0.99,
    ncols: int = 4,
) -> Figure:
    """A*_1h against each nonideality's grid value, one panel per nonideality.

    Each workload is one line (mean over repetitions with +-std error bars). Factor grids
    ("x standard") and absolute grids use a logarithmic x axis (symmetric-log when the grid
    holds 0); bit grids run from many to few bits, so harm grows to the right in every panel.
    The dashed line marks the iso-accuracy threshold.

    Args:
        summary: From :func:`analoglib.studies.nonideality_sensitivity.summarize`.
        nonidealities: Panels in this order (default: as in ``summary``).
        workloads: Lines in this order (default: as in ``summary``).
        threshold: A* of the dashed line (0.99 for iso-accuracy).
        ncols: Panels per row.

    Returns:
        The figure (double-column width).

    Raises:
        ValueError: If ``summary`` lacks columns or is empty.
    """
    _check_summary(summary, ["workload", "nonideality", "scale", "a_star_mean", "a_star_std"])
    names = _ordered(summary["nonideality"], nonidealities)
    lines = _ordered(summary["workload"], workloads)
    ncols = max(1, min(ncols, len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = subplots(
        nrows, ncols, width="double", height_in=1.75 * nrows, sharey=True, squeeze=False
    )
    for ax, name in zip(axes.flat, names, strict=False):
        item = get_nonideality(name)
        part = summary[summary["nonideality"] == name]
        for workload in lines:
            rows = part[part["workload"] == workload].sort_values("scale")
            ax.errorbar(
                rows["scale"],
                rows["a_star_mean"] * 100,
                yerr=rows["a_star_std"] * 100,
                marker="o",
                label=workload,
            )
        values = part["scale"].to_numpy(dtype=float)
        if item.kind == "bits":
            ax.invert_xaxis()
        elif (values > 0).all():
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(values[values > 0].min()))
        # Ticks at the grid values, as plain numbers (log-axis labels would overlap).
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(values.tolist()))))
        ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:g}")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.axhline(threshold * 100, color="0.3", linestyle="--", linewidth=0.8)
        ax.axvline(item.standard_value, color="0.6", linestyle=":", linewidth=0.8)
        ax.set_title(item.label)
        ax.set_xlabel(item.axis_label.replace(item.label + " ", ""))
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("A* at 1 h (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(lines))
    return fig


def plot_a_star_vs_mvm_error(
    summary: pd.DataFrame,
    workloads: list[str] | None = None,
    nonidealities: list[str] | None = None,
    target: float = 0.2,
) -> Figure:
    """A*_1h against the MVM error of a random tile, one panel per workload.

    Every nonideality is one line through its grid points (mean over repetitions); line
    styles mark the families (solid: input/output, dashed: weight, dotted: other), so the
    panels compare the nonidealities at equal MVM error (dotted vertical line at ``target``).

    Args:
        summary: From :func:`analoglib.studies.nonideality_sensitivity.summarize`.
        workloads: Panels in this order (default: as in ``summary``).
        nonidealities: Lines in this order (default: as in ``summary``).
        target: MVM error of the vertical line (0.2 is 20 %).

    Returns:
        The figure (double-column width).

    Raises:
        ValueError: If ``summary`` lacks columns or is empty.

    References:
        Rasch et al. 2023, Fig. 4B.
    """
    _check_summary(summary, ["workload", "nonideality", "scale", "a_star_mean", "mvm_error_mean"])
    panels = _ordered(summary["workload"], workloads)
    names = _ordered(summary["nonideality"], nonidealities)
    fig, axes = subplots(1, len(panels), width="double", height_in=2.9, sharey=True, squeeze=False)
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p"]
    for ax, workload in zip(axes[0], panels, strict=True):
        part = summary[summary["workload"] == workload]
        for index, name in enumerate(names):
            item = get_nonideality(name)
            rows = part[part["nonideality"] == name].sort_values("mvm_error_mean")
            ax.plot(
                rows["mvm_error_mean"] * 100,
                rows["a_star_mean"] * 100,
                linestyle=_FAMILY_STYLES.get(item.family, "-"),
                marker=markers[index % len(markers)],
                color=colors[index % len(colors)],
                label=f"{item.label} ({item.family})",
            )
        ax.axvline(target * 100, color="0.3", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500]))
        ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:g}")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(workload)
        ax.set_xlabel("MVM error at 1 h (%)")
    axes[0, 0].set_ylabel("A* at 1 h (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3)
    return fig


def plot_tolerance_heatmap(
    tolerances: pd.DataFrame,
    workloads: list[str] | None = None,
    nonidealities: list[str] | None = None,
    threshold: float = 0.99,
    title: str | None = None,
) -> Figure:
    """Tolerance of every nonideality (rows) for every workload (columns) as a heatmap.

    Each cell is annotated with the tolerance in the nonideality's unit (``2.5x`` the standard
    value, the fewest bits, or an absolute value; ``>=`` when the whole grid is tolerated,
    ``none`` when even its most benign value misses the threshold). The colour is the
    tolerated part of the swept range (0 to 1, in log scale), which is comparable across
    the kinds of grid.

    Args:
        tolerances: From :func:`analoglib.sweeps.tolerance_table`.
        workloads: Columns in this order (default: as in ``tolerances``).
        nonidealities: Rows in this order (default: as in ``tolerances``).
        threshold: The A* of the tolerance, for the default title.
        title: Axes title; by default ``Tolerance at A* (1 h) >= <threshold>``.

    Returns:
        The figure (single-column width).

    Raises:
        ValueError: If ``tolerances`` lacks columns or is empty.

    References:
        Rasch et al. 2023, Fig. 5B.
    """
    _check_summary(tolerances, ["workload", "nonideality", "text", "reach"])
    columns = _ordered(tolerances["workload"], workloads)
    rows = _ordered(tolerances["nonideality"], nonidealities)
    reach = np.full((len(rows), len(columns)), np.nan)
    texts = [["" for _ in columns] for _ in rows]
    for record in tolerances.itertuples():
        if record.nonideality in rows and record.workload in columns:
            i, j = rows.index(str(record.nonideality)), columns.index(str(record.workload))
            reach[i, j] = float(record.reach)  # type: ignore[arg-type]
            texts[i][j] = str(record.text)
    height = 0.8 + 0.25 * len(rows)
    fig, ax = subplots(width="single", height_in=height)
    image = ax.imshow(reach, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            dark = not np.isnan(reach[i, j]) and reach[i, j] < 0.6
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), [get_nonideality(name).label for name in rows])
    ax.grid(False)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, label="Tolerated part of swept range")
    ax.set_title(f"Tolerance at A* (1 h) >= {threshold:.0%}" if title is None else title)
    return fig
