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
from matplotlib.lines import Line2D
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

    Each workload is one line (mean over repetitions with ±1 std error bars). Factor grids
    (× standard value) use a logarithmic x axis, absolute grids (which hold 0) a linear one,
    so the spacing of the points is their numeric spacing; bit grids run from many to few
    bits, so harm grows to the right in every panel. The dashed line marks the iso-accuracy
    threshold, the dotted one the standard value.

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
        elif item.kind == "factor":
            ax.set_xscale("log")
        # Ticks at the grid values, as plain numbers (log-axis labels would overlap).
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(values.tolist()))))
        ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:g}")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.axhline(threshold * 100, color="0.3", linestyle="--", linewidth=0.8)
        ax.axvline(item.standard_value, color="0.6", linestyle=":", linewidth=0.8)
        ax.set_title(item.label)
        ax.set_xlabel(item.value_label)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("A* at 1 h (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", linestyle="--", linewidth=0.8),
        Line2D([], [], color="0.6", linestyle=":", linewidth=0.8),
    ]
    labels += [f"A* = {threshold:.0%} (iso-accuracy)", "standard value"]
    n_reps = int(summary["n_reps"].max()) if "n_reps" in summary else 0
    fig.legend(handles, labels, loc="outside lower center", ncols=len(lines) + 2)
    fig.suptitle(
        "A* 1 h after programming, one nonideality scaled at a time"
        + (f" (mean ± 1 std over {n_reps} programmings)" if n_reps else "")
    )
    return fig


def plot_a_star_vs_mvm_error(
    summary: pd.DataFrame,
    workloads: list[str] | None = None,
    nonidealities: list[str] | None = None,
    target: float = 0.2,
    span: float = 2.5,
) -> Figure:
    """A*_1h against the MVM error of a random tile, one panel per workload.

    Every nonideality is one line through its grid points (mean over repetitions, ±1 std
    error bars in both directions); line styles mark the families (solid: input/output,
    dashed: weight, dotted: other), so the panels compare the nonidealities at equal MVM error
    (the labelled vertical line at ``target``). The x axis is linear and shows the region
    around the comparison, ``target`` / ``span`` to ``span`` × ``target``; points beyond it
    are drawn as arrows at the right edge, labelled with their MVM error, so one extreme point
    does not squeeze the comparison into a corner.

    Args:
        summary: From :func:`analoglib.studies.nonideality_sensitivity.summarize`.
        workloads: Panels in this order (default: as in ``summary``).
        nonidealities: Lines in this order (default: as in ``summary``).
        target: MVM error of the comparison (0.2 is 20 %).
        span: Right edge of the x axis as a multiple of ``target``.

    Returns:
        The figure (double-column width).

    Raises:
        ValueError: If ``summary`` lacks columns or is empty, or ``span <= 1``.

    References:
        Rasch et al. 2023, Fig. 4B.
    """
    _check_summary(summary, ["workload", "nonideality", "scale", "a_star_mean", "mvm_error_mean"])
    if not span > 1:
        raise ValueError(f"span = {span!r} is not allowed: expected a number > 1.")
    panels = _ordered(summary["workload"], workloads)
    names = _ordered(summary["nonideality"], nonidealities)
    fig, axes = subplots(1, len(panels), width="double", height_in=3.1, sharey=True, squeeze=False)
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p"]
    x_max = 100 * target * span
    for ax, workload in zip(axes[0], panels, strict=True):
        part = summary[summary["workload"] == workload]
        for index, name in enumerate(names):
            item = get_nonideality(name)
            rows = part[part["nonideality"] == name].sort_values("mvm_error_mean")
            x = rows["mvm_error_mean"].to_numpy(dtype=float) * 100
            y = rows["a_star_mean"].to_numpy(dtype=float) * 100
            color = colors[index % len(colors)]
            inside = x <= x_max
            ax.errorbar(
                x[inside],
                y[inside],
                xerr=_std(rows, "mvm_error_std")[inside] * 100,
                yerr=_std(rows, "a_star_std")[inside] * 100,
                linestyle=_FAMILY_STYLES.get(item.family, "-"),
                marker=markers[index % len(markers)],
                markersize=4,
                capsize=2,
                color=color,
                label=f"{item.label} ({item.family})",
            )
            for xv, yv in zip(x[~inside], y[~inside], strict=True):
                ax.annotate(
                    f"{xv:.0f} %",
                    xy=(x_max, yv),
                    xytext=(x_max * 0.86, yv),
                    color=color,
                    fontsize=6,
                    va="center",
                    ha="right",
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 0.8},
                )
        ax.axvline(target * 100, color="0.3", linestyle=":", linewidth=0.9)
        ax.text(
            target * 100,
            0.02,
            f" comparison at {target:.0%}",
            transform=ax.get_xaxis_transform(),
            fontsize=6,
            color="0.3",
            rotation=90,
            va="bottom",
            ha="right",
        )
        ax.set_xlim(100 * target / span, x_max)
        ax.set_title(workload)
        ax.set_xlabel("MVM error of a random tile at 1 h (%)")
    axes[0, 0].set_ylabel("A* at 1 h (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3)
    n_reps = int(summary["n_reps"].max()) if "n_reps" in summary else 0
    fig.suptitle(
        "A* against the MVM error of a random tile, each nonideality scaled alone\n"
        + (f"mean ± 1 std over {n_reps} programmings; " if n_reps else "")
        + "arrows: points beyond the axis, with their MVM error"
    )
    return fig


def _std(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows:
        return np.zeros(len(rows))
    return rows[column].fillna(0.0).to_numpy(dtype=float)


def plot_tolerance_heatmap(
    tolerances: pd.DataFrame,
    workloads: list[str] | None = None,
    nonidealities: list[str] | None = None,
    threshold: float = 0.99,
    title: str | None = None,
) -> Figure:
    """Tolerance of every nonideality (rows) for every workload (columns) as a heatmap.

    Each cell is annotated with the tolerance in the nonideality's unit (``2.5×`` the standard
    value, the fewest bits, or an absolute value), or with the bound the grid gives
    (:func:`~analoglib.studies.nonideality_sensitivity.tolerance_text`: ``≥4×`` when the whole
    grid is tolerated, ``<0.5×`` when even its most benign value misses the threshold). The
    colour is the tolerated part of the swept range (0 to 1, in log scale), which is
    comparable across the kinds of grid.

    Args:
        tolerances: From :func:`analoglib.sweeps.tolerance_table`.
        workloads: Columns in this order (default: as in ``tolerances``).
        nonidealities: Rows in this order (default: as in ``tolerances``).
        threshold: The A* of the tolerance, for the default title.
        title: Axes title; by default ``Tolerance at A* (1 h) ≥ <threshold>``.

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
    ax.set_xlabel("Workload")
    ax.set_ylabel("Nonideality (scaled alone)")
    ax.grid(False)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, label="Tolerated part of swept range")
    ax.set_title(f"Tolerance at A* (1 h) ≥ {threshold:.0%}" if title is None else title)
    return fig
