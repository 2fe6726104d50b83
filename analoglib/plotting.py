"""Figure style, figure files and the generic plots of the notebooks.

Notebooks never set rcParams and never call ``fig.savefig``: they apply the packaged style with
:func:`use_paper_style`, draw with the functions here (or a study's own plots, which build on
them) and write files with :func:`savefig`,
which controls names, formats and metadata (``docs/development.md#figures``,
``docs/development.md#plot-style``).

Figure sizes follow the usual journal columns: :data:`SINGLE_COLUMN_IN` (3.5 in) and
:data:`DOUBLE_COLUMN_IN` (7.16 in) wide, 8-9 pt fonts, constrained layout and seaborn's
colour-blind-safe ``colorblind`` palette (written into ``styles/paper.mplstyle``).
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from analoglib._deprecation import moved_names
from analoglib.utils import COMMITTED_OUTPUTS, paths

__all__ = [
    "DOUBLE_COLUMN_IN",
    "SINGLE_COLUMN_IN",
    "STYLE_PATH",
    "TIME_TICKS_S",
    "PaperStyle",
    "format_time_axis",
    "plot_metric_vs_time",
    "plot_tasks_vs_time",
    "plot_variants_vs_time",
    "check_figure",
    "savefig",
    "subplots",
    "use_paper_style",
]

#: The packaged Matplotlib style file.
STYLE_PATH = Path(__file__).resolve().parent / "styles" / "paper.mplstyle"
#: Width of a single-column figure (in).
SINGLE_COLUMN_IN = 3.5
#: Width of a double-column figure (in).
DOUBLE_COLUMN_IN = 7.16
#: Default height of a figure (in): 3.5 x 2.5 in, as d2l's default.
DEFAULT_HEIGHT_IN = 2.5
#: Labelled ticks of a time axis (s): 1 s, 1 min, 1 h, 1 d, 1 mo (30 d), 1 y (365 d).
TIME_TICKS_S: dict[float, str] = {
    1.0: "1 s",
    60.0: "1 min",
    3600.0: "1 h",
    86400.0: "1 d",
    2592000.0: "1 mo",
    31536000.0: "1 y",
}
#: Figure names: ``NN_<slug>__<panel>`` (``docs/development.md#figures``), or
#: ``NN_<slug>__<run>__<panel>`` for a notebook run once per ``<run>`` (e.g. per workload).
FIGURE_NAME_RE = re.compile(r"^\d\d_[a-z0-9]+(?:_[a-z0-9]+)*(?:__[a-z0-9]+(?:_[a-z0-9]+)*){1,2}$")
# Metadata that would otherwise change with every run or Matplotlib version.
_PNG_METADATA: dict[str, Any] = {"Software": None}
_PDF_METADATA: dict[str, Any] = {"Creator": None, "Producer": None, "CreationDate": None}
# Legend labels of the drift-compensation column written by analoglib.evaluate.
_GDC_LABELS = {True: "with GDC", False: "without GDC"}


class PaperStyle:
    """The packaged paper style, applied on construction (see :func:`use_paper_style`).

    Used as a context manager it restores the previous rcParams on exit; used as a plain call
    the style stays applied.
    """

    def __init__(self) -> None:
        saved = dict(mpl.rcParams.copy())
        saved.pop("backend", None)  # never switch backends when restoring
        self._saved = saved
        mpl.style.use(STYLE_PATH)

    def __enter__(self) -> PaperStyle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mpl.MatplotlibDeprecationWarning)
            mpl.rcParams.update(self._saved)


def use_paper_style() -> PaperStyle:
    """Apply the packaged style ``analoglib/styles/paper.mplstyle``.

    Works both as a plain call (the style stays applied, as in a notebook's set-up cell) and as
    a context manager (the previous rcParams come back on exit)::

        al.plotting.use_paper_style()
        with al.plotting.use_paper_style():
            fig, ax = al.plotting.subplots()

    Returns:
        The applied style; use it in a ``with`` statement to restore the previous settings.
    """
    return PaperStyle()


def _width_in(width: str | float) -> float:
    if width == "single":
        return SINGLE_COLUMN_IN
    if width == "double":
        return DOUBLE_COLUMN_IN
    if isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0:
        return float(width)
    raise ValueError(
        f"width = {width!r} is not allowed: expected 'single', 'double' or a width in inches > 0."
    )


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    width: str | float = "single",
    height_in: float | None = None,
    **kwargs: Any,
) -> tuple[Figure, Any]:
    """A figure of journal-column width with a grid of axes (``plt.subplots`` underneath).

    Args:
        nrows: Rows of axes.
        ncols: Columns of axes.
        width: ``"single"`` (3.5 in), ``"double"`` (7.16 in) or a width in inches.
        height_in: Height in inches; by default 2.5 in per row of axes.
        **kwargs: Passed to :func:`matplotlib.pyplot.subplots` (``sharex``, ``sharey``, ...).

    Returns:
        ``(fig, axes)`` as :func:`matplotlib.pyplot.subplots` returns them.

    Raises:
        ValueError: For an unknown ``width``.
    """
    height = DEFAULT_HEIGHT_IN * nrows if height_in is None else height_in
    return plt.subplots(nrows, ncols, figsize=(_width_in(width), height), **kwargs)


def savefig(
    fig: Figure, name: str, profile: str = "default", output_dir: str = COMMITTED_OUTPUTS
) -> list[Path]:
    """Write a figure as vector PDF and 300-dpi PNG into the run's figure folder.

    The files are ``<name>.pdf`` and ``<name>.png`` in
    :meth:`analoglib.utils.paths.figures_dir` (with ``output_dir = "committed"``:
    ``figures/`` for the default profile, ``build/<profile>/figures/`` otherwise; any other
    ``output_dir``: ``<output_dir>/<profile>/figures/``). Metadata that changes from run to
    run (software version, creation date) is left out, so the same figure gives the same bytes.

    Args:
        fig: The figure.
        name: ``NN_<slug>__<panel>``, e.g. ``"00_quickstart__accuracy_vs_time"``, or
            ``NN_<slug>__<run>__<panel>`` for one of several runs of a notebook, e.g.
            ``"02_hwa_retraining__cnn__accuracy_vs_time"``.
        profile: ``"default"``, ``"smoke"`` or ``"paper"``; only routes the files.
        output_dir: ``"committed"`` or a folder, relative to the project root.

    Returns:
        The paths of the PDF and the PNG file, in that order.

    Raises:
        ValueError: If ``name`` is not ``NN_<slug>__<panel>``, ``profile`` is unknown, or the
            figure fails :func:`check_figure`.
    """
    if not isinstance(name, str) or not FIGURE_NAME_RE.match(name):
        raise ValueError(
            f"name = {name!r} is not allowed: expected 'NN_<slug>__<panel>' in lower-case "
            "snake case, e.g. '00_quickstart__accuracy_vs_time'."
        )
    check_figure(fig, name)
    folder = paths.figures_dir(profile, output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    pdf = folder / f"{name}.pdf"
    png = folder / f"{name}.png"
    fig.savefig(pdf, format="pdf", metadata=_PDF_METADATA)
    fig.savefig(png, format="png", dpi=300, metadata=_PNG_METADATA)
    return [pdf, png]


def _has_label(ax: Axes, axis: str) -> bool:
    """Whether ``ax`` or an axes sharing its ``axis`` carries a label on that axis."""
    shared = ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()
    for other in shared.get_siblings(ax):
        label = other.get_xlabel() if axis == "x" else other.get_ylabel()
        if label.strip():
            return True
    return False


def check_figure(fig: Figure, name: str = "figure") -> None:
    """Refuse a figure a reader cannot decode: every plot needs axis labels, the figure a name.

    Every visible axes must label its x and y axes (a panel may rely on a panel it shares the
    axis with); a colour bar needs one label. The figure must say what it shows: a title
    (figure or axes) or a legend.

    Raises:
        ValueError: Naming the figure and the axes that lack a label, or the missing title.
    """
    problems = []
    for index, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        what = f"axes {index} ({ax.get_title() or 'untitled'})"
        if getattr(ax, "_colorbar", None) is not None:
            if not (ax.get_xlabel().strip() or ax.get_ylabel().strip()):
                problems.append(f"{what}: colour bar without a label")
            continue
        missing = [axis for axis in ("x", "y") if not _has_label(ax, axis)]
        if missing:
            problems.append(f"{what}: no {' or '.join(missing)} label")
    titled = bool(fig.get_suptitle().strip()) or any(ax.get_title().strip() for ax in fig.axes)
    legend = bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)
    if not (titled or legend):
        problems.append("no title and no legend names what it shows")
    if problems:
        raise ValueError(f"{name} is not allowed: " + "; ".join(problems) + ".")


def format_time_axis(
    ax: Axes, axis: str = "x", label: str | None = "Time after programming"
) -> Axes:
    """Log-scale time axis in seconds with ticks labelled 1 s, 1 min, 1 h, 1 d, 1 mo, 1 y.

    Args:
        ax: The axes.
        axis: ``"x"`` or ``"y"``.
        label: Axis label; ``None`` leaves the label alone.

    Returns:
        ``ax``.

    Raises:
        ValueError: If ``axis`` is neither ``"x"`` nor ``"y"``.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis = {axis!r} is not allowed: expected 'x' or 'y'.")
    target = ax.xaxis if axis == "x" else ax.yaxis
    if axis == "x":
        ax.set_xscale("log")
    else:
        ax.set_yscale("log")
    target.set_major_locator(FixedLocator(list(TIME_TICKS_S)))
    target.set_major_formatter(lambda value, _pos: TIME_TICKS_S.get(float(value), ""))
    target.set_minor_locator(NullLocator())
    if label is not None:
        target.set_label_text(label)
    return ax


def _group_label(hue: str, value: Any, labels: Mapping[Any, str] | None) -> str:
    if labels is not None and value in labels:
        return labels[value]
    if hue == "drift_compensation" and value in _GDC_LABELS:
        return _GDC_LABELS[bool(value)]
    return f"{hue} {value}"


def plot_metric_vs_time(
    df: pd.DataFrame,
    metric: str = "metric",
    hue: str | None = None,
    ax: Axes | None = None,
    label: str | None = None,
    labels: Mapping[Any, str] | None = None,
    reference: float | None = None,
    reference_label: str | None = "FP",
    scale: float = 1.0,
    ylabel: str | None = None,
    band: bool = True,
    marker: str = "o",
    legend: bool = True,
    band_label: str | None = "band: ±1 std over {n} programmings",
    title: str | None = None,
    **line_kwargs: Any,
) -> Axes:
    """Mean of a metric over repetitions versus time after programming, with a +-std band.

    Takes the tidy table of :func:`analoglib.evaluate` (columns ``rep``, ``seed``,
    ``t_inference_s``, ``drift_compensation`` and the metric columns); for each group of
    ``hue`` it draws the mean over the rows at each time and shades mean +- one standard
    deviation (sample std over repetitions; none with a single repetition). The time axis is
    formatted by :func:`format_time_axis`.

    Args:
        df: Tidy evaluation table.
        metric: Metric column to plot.
        hue: Column whose values give one curve each (e.g. ``"drift_compensation"``, labelled
            "with GDC" / "without GDC"); ``None`` draws a single curve.
        ax: Axes to draw on; a new single-column figure by default.
        label: Legend label of the single curve, or a prefix of each group's label with ``hue``.
        labels: Legend label per ``hue`` value (overrides the defaults).
        reference: Value of a dashed horizontal reference line (e.g. the FP accuracy), in the
            units of the metric (``scale`` is applied).
        reference_label: Legend label of the reference line.
        scale: Factor applied to the metric and the reference (100 gives percent).
        ylabel: Y-axis label; the metric name by default.
        band: Draw the +-std band.
        marker: Marker of the mean curve.
        legend: Draw a legend when any curve has a label.
        band_label: Legend entry that defines the band (``{n}``: the most repetitions at a
            time); ``None`` leaves it out.
        title: Axes title (name the model and data).
        **line_kwargs: Passed to :meth:`matplotlib.axes.Axes.plot` for every curve.

    Returns:
        The axes.

    Raises:
        ValueError: If ``df`` lacks the ``t_inference_s``, ``metric`` or ``hue`` column, or is
            empty.
    """
    needed = ["t_inference_s", metric] + ([hue] if hue is not None else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"df lacks the column(s) {', '.join(missing)}; its columns are: "
            f"{', '.join(map(str, df.columns))}."
        )
    if df.empty:
        raise ValueError("df is empty: nothing to plot.")
    if ax is None:
        _, ax = subplots()
    assert ax is not None

    groups: list[tuple[str | None, pd.DataFrame]]
    if hue is None:
        groups = [(label, df)]
    else:
        groups = []
        for value in pd.unique(df[hue]):
            group = _group_label(hue, value, labels)
            groups.append((f"{label}, {group}" if label else group, df[df[hue] == value]))

    n_band = 0  # most repetitions behind a drawn band
    for name, part in groups:
        stats = part.groupby("t_inference_s")[metric].agg(["mean", "std", "count"]).sort_index()
        t = stats.index.to_numpy(dtype=float)
        mean = stats["mean"].to_numpy(dtype=float) * scale
        std = stats["std"].fillna(0.0).to_numpy(dtype=float) * abs(scale)
        (line,) = ax.plot(t, mean, marker=marker, label=name, **line_kwargs)
        if band and (stats["count"] > 1).any():
            ax.fill_between(t, mean - std, mean + std, color=line.get_color(), alpha=0.25, lw=0)
            n_band = max(n_band, int(stats["count"].max()))

    if reference is not None:
        ax.axhline(
            reference * scale,
            color="0.3",
            linestyle="--",
            linewidth=0.9,
            label=reference_label,
            zorder=1,
        )
    if n_band and band_label is not None:
        # An invisible patch, so the legend says what the shading is.
        ax.fill_between(
            [], [], [], color="0.5", alpha=0.25, lw=0, label=band_label.format(n=n_band)
        )
    format_time_axis(ax)
    ax.set_ylabel(metric if ylabel is None else ylabel)
    if title:
        ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    if legend and handles:
        ax.legend()
    return ax


def plot_variants_vs_time(
    df: pd.DataFrame,
    metric: str,
    variant: str = "variant",
    reference: float | None = None,
    reference_label: str | None = "FP",
    scale: float = 1.0,
    ylabel: str | None = None,
    log_y: bool = False,
    title: str | None = None,
    published: Mapping[float, float] | None = None,
    published_label: str = "published HWA",
) -> Figure:
    """One panel with and one without drift compensation: a curve per model variant.

    Each panel draws, for every value of ``variant`` (e.g. direct mapping, HWA-trained), the
    mean of ``metric`` over repetitions versus time after programming with a +-std band
    (:func:`plot_metric_vs_time`), plus the dashed FP reference. Each panel has its own y
    range, so a small spread with drift compensation is not flattened by a collapse without.

    Args:
        df: Tidy table of :func:`analoglib.evaluate` with the columns ``variant`` and
            ``drift_compensation``.
        metric: Metric column.
        variant: Column naming the model variant.
        reference: FP value of the metric (dashed line), in the metric's units.
        reference_label: Legend label of the reference.
        scale: Factor on the metric and the reference (100 gives percent).
        ylabel: Y-axis label; the metric name by default.
        log_y: Logarithmic y-axis (e.g. perplexity).
        title: Figure title (name the workload and the data).
        published: Published values to mark on the drift-compensated panel, time (s) ->
            value in the metric's units (``scale`` is applied).
        published_label: Legend label of the published markers.

    Returns:
        The double-column figure.

    Raises:
        ValueError: If ``df`` lacks the ``variant`` or ``drift_compensation`` column.
    """
    missing = [c for c in (variant, "drift_compensation") if c not in df.columns]
    if missing:
        raise ValueError(
            f"df lacks the column(s) {', '.join(missing)}; its columns are: "
            f"{', '.join(map(str, df.columns))}."
        )
    fig, axes = subplots(1, 2, width="double")
    for ax, gdc in zip(axes, (True, False), strict=True):
        part = df[df["drift_compensation"] == gdc]
        if part.empty:
            ax.set_axis_off()
            continue
        plot_metric_vs_time(
            part,
            metric,
            hue=variant,
            ax=ax,
            labels={value: str(value) for value in pd.unique(part[variant])},
            reference=reference,
            reference_label=reference_label,
            scale=scale,
            ylabel=ylabel,
            legend=False,
        )
        if gdc and published:
            times = sorted(published)
            ax.plot(
                times,
                [published[t] * scale for t in times],
                linestyle="none",
                marker="*",
                markersize=9,
                color="black",
                label=published_label,
                zorder=5,
            )
        ax.set_title(_GDC_LABELS[gdc])
        if log_y:
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(textwrap.fill(title, 110))
    return fig


def plot_tasks_vs_time(
    df: pd.DataFrame,
    metric: str = "score",
    hue: str = "configuration",
    labels: Mapping[Any, str] | None = None,
    references: Mapping[str, float] | None = None,
    reference_label: str = "ideal",
    ylabel: str | None = None,
) -> Figure:
    """One panel per task: mean +- std of a metric versus time for each value of ``hue``.

    Args:
        df: Tidy table of :func:`analoglib.evaluate` with ``task`` and ``hue`` columns.
        metric: Metric column.
        hue: Column giving one curve each (e.g. the configuration).
        labels: Legend label per ``hue`` value.
        references: Dashed reference value per task (e.g. the ideal score).
        reference_label: Legend label of the reference.
        ylabel: Y-axis label of the first panel.

    Returns:
        A double-column figure, panels sharing the y-axis.

    Raises:
        ValueError: If ``df`` lacks the ``task`` column.
    """
    if "task" not in df.columns:
        raise ValueError(f"df lacks the column task; its columns are: {', '.join(df.columns)}.")
    tasks = list(pd.unique(df["task"]))
    fig, axes = subplots(1, len(tasks), width="double", sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        plot_metric_vs_time(
            df[df["task"] == task],
            metric,
            hue=hue,
            ax=ax,
            labels=labels,
            reference=None if references is None else references.get(task),
            reference_label=reference_label,
            ylabel=ylabel if ax is axes[0][0] else "",
            legend=ax is axes[0][0],
        )
        ax.set_title(task)
    return fig


_SENSITIVITY = "analoglib.studies.nonideality_sensitivity"
__getattr__ = moved_names(
    __name__,
    {
        "plot_a_star_vs_mvm_error": (_SENSITIVITY, "plot_a_star_vs_mvm_error"),
        "plot_sweep_a_star": (_SENSITIVITY, "plot_sweep_a_star"),
        "plot_tolerance_heatmap": (_SENSITIVITY, "plot_tolerance_heatmap"),
        "plot_configuration_scores": (
            "analoglib.studies.glue_post_training",
            "plot_configuration_scores",
        ),
    },
)
