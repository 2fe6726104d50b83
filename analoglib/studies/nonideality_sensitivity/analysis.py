"""Analysis of a finished sweep: summaries, tolerances, A* at equal MVM error, the findings.

References:
    Rasch et al. 2023 (tolerance factors, equal-MVM-error comparison); ``docs/model.md#metrics``,
    ``docs/published-results.md#rasch-2023``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analoglib.studies.nonideality_sensitivity.registry import (
    ISO_ACCURACY,
    STANDARD,
    Nonideality,
    get_nonideality,
)

__all__ = [
    "a_star_at_mvm_error",
    "baseline",
    "check_findings",
    "describe_findings",
    "expand_standard",
    "interpolate_tolerance",
    "relative_tolerance_table",
    "rising_steps",
    "results_metrics",
    "summarize",
    "tolerance_table",
    "tolerance_text",
]


log = logging.getLogger(__name__)


# -- analysis -------------------------------------------------------------------------------------
def expand_standard(table: pd.DataFrame) -> pd.DataFrame:
    """Copy the standard model's rows into every swept nonideality at its standard value.

    Args:
        table: Point table of :func:`run_sweep` (with ``"standard"`` rows).

    Returns:
        The rows of the swept nonidealities only, each curve completed by the standard point.
    """
    standard = table[table["nonideality"] == STANDARD]
    swept = table[table["nonideality"] != STANDARD]
    parts = [swept]
    for name in pd.unique(swept["nonideality"]):
        item = get_nonideality(name)
        rows = standard.copy()
        rows["nonideality"] = name
        rows["scale"] = item.standard_value
        parts.append(rows)
    return pd.concat(parts, ignore_index=True).sort_values(
        ["workload", "nonideality", "scale", "rep"], ignore_index=True
    )


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over repetitions of A*, the error and the MVM error per point.

    Args:
        table: Point table of :func:`run_sweep`.

    Returns:
        One row per ``(workload, nonideality, scale)`` with ``a_star_mean``, ``a_star_std``,
        ``error_mean``, ``error_std``, ``mvm_error_mean``, ``mvm_error_std`` and ``n_reps``
        (sample std; 0 for a single repetition), the standard model included in every curve.
    """
    full = expand_standard(table)
    grouped = full.groupby(["workload", "nonideality", "scale"], sort=True)
    out = grouped.agg(
        a_star_mean=("a_star", "mean"),
        a_star_std=("a_star", "std"),
        error_mean=("error", "mean"),
        error_std=("error", "std"),
        mvm_error_mean=("mvm_error", "mean"),
        mvm_error_std=("mvm_error", "std"),
        n_reps=("rep", "count"),
    ).reset_index()
    for column in ("a_star_std", "error_std", "mvm_error_std"):
        out[column] = out[column].fillna(0.0)
    return out


def baseline(table: pd.DataFrame) -> pd.DataFrame:
    """The standard model per workload: FP error, error, A* and MVM error (mean and std).

    Args:
        table: Point table of :func:`run_sweep`.
    """
    standard = table[table["nonideality"] == STANDARD]
    return standard.groupby("workload", sort=False).agg(
        error_fp=("error_fp", "first"),
        error_mean=("error", "mean"),
        a_star_mean=("a_star", "mean"),
        a_star_std=("a_star", "std"),
        mvm_error_mean=("mvm_error", "mean"),
        n_reps=("rep", "count"),
    )


def _harm_order(item: Nonideality, values: np.ndarray) -> np.ndarray:
    """Indices that sort grid values from the most benign to the most harmful."""
    return np.argsort(-values if item.error_direction < 0 else values, kind="stable")


def interpolate_tolerance(
    item: Nonideality, values: Sequence[float], a_star: Sequence[float], threshold: float
) -> tuple[float, str]:
    """How far a nonideality can be pushed while A* stays at or above ``threshold``.

    Walking the grid from the most benign value, the tolerance lies between the last value
    with A* >= threshold and the first one below. It is interpolated linearly in log(value)
    (linearly in the value when the lower one is 0); for bits it is the fewest bits that still
    reach the threshold (no interpolation).

    Args:
        item: The nonideality.
        values: Grid values (any order, no duplicates).
        a_star: Mean A* at each value.
        threshold: The A* to keep (0.99 for iso-accuracy).

    Returns:
        ``(tolerance, censored)``: ``censored`` is ``""`` for a crossing inside the grid,
        ``"above"`` when every value reaches the threshold (the tolerance is at least the most
        harmful value, which is returned), or ``"below"`` when even the most benign value
        misses it (the tolerance is NaN).
    """
    v = np.asarray(values, dtype=float)
    a = np.asarray(a_star, dtype=float)
    if v.shape != a.shape or v.ndim != 1 or v.size == 0:
        raise ValueError("values and a_star must be non-empty 1-d sequences of equal length.")
    order = _harm_order(item, v)
    v, a = v[order], a[order]
    if not a[0] >= threshold:
        return math.nan, "below"
    failing = np.nonzero(~(a >= threshold))[0]
    if failing.size == 0:
        return float(v[-1]), "above"
    k = int(failing[0])
    if item.kind == "bits":
        return float(v[k - 1]), ""
    v0, v1, a0, a1 = v[k - 1], v[k], a[k - 1], a[k]
    frac = (a0 - threshold) / (a0 - a1)  # a0 >= threshold > a1
    if v0 > 0:
        return float(math.exp(math.log(v0) + frac * (math.log(v1) - math.log(v0)))), ""
    return float(v0 + frac * (v1 - v0)), ""


def tolerance_text(item: Nonideality, values: np.ndarray, tolerance: float, censored: str) -> str:
    """The tolerance as a value or a bound that the swept grid supports.

    A crossing inside the grid gives the value (``"2.3×"``, ``"6 bit"``). A grid that stays at
    or above the level throughout bounds the tolerance by its most harmful value: ``"≥4×"``
    (factors and absolute values), ``"≤4 bit"`` (bits: at most that many are needed). A grid
    whose most benign value already misses the level bounds it by that value: ``"<0.5×"``, or
    ``">8 bit"`` (more bits than swept are needed); an absolute grid that starts at 0 (the
    standard value) gives ``"fails at 0"``.
    """
    if censored == "":
        return item.format_value(tolerance)
    order = _harm_order(item, values)
    benign, harmful = float(values[order[0]]), float(values[order[-1]])
    if item.kind == "bits":
        return (
            ("≤" + item.format_value(harmful))
            if censored == "above"
            else (">" + item.format_value(benign))
        )
    if censored == "above":
        return "≥" + item.format_value(harmful)
    if benign == 0:
        return "fails at 0"  # the standard model itself misses the level: no bound to give
    return "<" + item.format_value(benign)


def _grid_reach(item: Nonideality, values: np.ndarray, tolerance: float, censored: str) -> float:
    """Position of the tolerance in the swept range: 0 (none of it) to 1 (all of it).

    Measured in log(value) for factors, in bits for the converters and linearly for absolute
    grids (which start at 0), from the most benign grid value.
    """
    if censored == "below":
        return 0.0
    if censored == "above":
        return 1.0
    if item.kind == "bits":
        lo, hi, x = values.max(), values.min(), tolerance
        return float((lo - x) / (lo - hi)) if lo != hi else 1.0
    if item.kind == "absolute":
        lo, hi = float(values.min()), float(values.max())
        return float((tolerance - lo) / (hi - lo)) if hi > lo else 1.0
    positive = values[values > 0]
    if positive.size < 2:
        return float("nan")
    lo, hi = math.log(positive.min()), math.log(positive.max())
    x = math.log(max(tolerance, positive.min()))
    return float(min(max((x - lo) / (hi - lo), 0.0), 1.0))


def tolerance_table(
    summary: pd.DataFrame, threshold: float | Mapping[str, float] = ISO_ACCURACY
) -> pd.DataFrame:
    """Tolerance of every (workload, nonideality): how far it can be scaled with A* >= 99 %.

    Args:
        summary: From :func:`summarize`.
        threshold: The A*_1h to keep, or one per workload (e.g. the standard model's A* minus
            0.01, a tolerance relative to the unswept model for models that are not
            iso-accurate at standard).

    Returns:
        One row per pair: ``tolerance`` (a factor on the standard value, the fewest bits, or
        an absolute value, per the nonideality's kind), ``censored`` (see
        :func:`interpolate_tolerance`), ``kind``, ``text`` (:func:`tolerance_text`, e.g.
        ``"2.3×"``, ``"≥4×"``, ``"<0.5×"``, ``"6 bit"``, ``">8 bit"``) and ``reach`` (0-1,
        the tolerated part of the swept range, for colour).

    References:
        Rasch et al. 2023, Fig. 5B (tolerance factors); ``docs/published-results.md#rasch-2023``.
    """
    rows = []
    for (workload, name), part in summary.groupby(["workload", "nonideality"], sort=False):
        item = get_nonideality(str(name))
        values = part["scale"].to_numpy(dtype=float)
        level = threshold[str(workload)] if isinstance(threshold, Mapping) else threshold
        tolerance, censored = interpolate_tolerance(
            item, values, part["a_star_mean"].to_numpy(dtype=float), level
        )
        text = tolerance_text(item, values, tolerance, censored)
        rows.append(
            {
                "workload": workload,
                "nonideality": name,
                "kind": item.kind,
                "tolerance": tolerance,
                "censored": censored,
                "threshold": level,
                "text": text,
                "reach": _grid_reach(item, values, tolerance, censored),
            }
        )
    return pd.DataFrame(rows)


def _curves(summary: pd.DataFrame) -> Iterator[tuple[Any, Any, Nonideality, pd.DataFrame]]:
    """Each (workload, nonideality) curve of a summary, its rows from benign to harmful."""
    for (workload, name), part in summary.groupby(["workload", "nonideality"], sort=False):
        item = get_nonideality(str(name))
        order = _harm_order(item, part["scale"].to_numpy(dtype=float))
        yield workload, name, item, part.iloc[order]


def rising_steps(summary: pd.DataFrame) -> pd.DataFrame:
    """Steps along a grid where A* rises with more harm by more than the error bars allow.

    More of a nonideality should never help. Walking each (workload, nonideality) grid from
    the most benign to the most harmful value, a step whose mean A* rises by more than the sum
    of the two points' standard deviations (the error bars no longer overlap) is listed.

    Args:
        summary: From :func:`summarize`.

    Returns:
        One row per such step: ``workload``, ``nonideality``, ``from_value``, ``to_value``,
        ``rise`` (A* points, as a fraction) and ``error_bars`` (the sum of the two stds);
        empty when every curve is monotone within its error bars.
    """
    rows = []
    for workload, name, _, curve in _curves(summary):
        values = curve["scale"].to_numpy(dtype=float)
        a = curve["a_star_mean"].to_numpy(dtype=float)
        bars = curve["a_star_std"].to_numpy(dtype=float)
        rise, allowed = np.diff(a), bars[1:] + bars[:-1]
        for k in np.nonzero(rise > allowed)[0]:
            rows.append(
                {
                    "workload": workload,
                    "nonideality": name,
                    "from_value": float(values[k]),
                    "to_value": float(values[k + 1]),
                    "rise": float(rise[k]),
                    "error_bars": float(allowed[k]),
                }
            )
    columns = ["workload", "nonideality", "from_value", "to_value", "rise", "error_bars"]
    return pd.DataFrame(rows, columns=columns)


def a_star_at_mvm_error(summary: pd.DataFrame, target: float = 0.2) -> pd.DataFrame:
    """A* of every (workload, nonideality) where its MVM error reaches ``target``.

    Along each nonideality's grid (from benign to harmful) the mean MVM error rises; the A*
    at the first crossing of ``target`` is interpolated linearly in the MVM error. Pairs whose
    MVM errors never reach (or start above) the target give NaN.

    Args:
        summary: From :func:`summarize`.
        target: The MVM error (0.2 means 20 %, Rasch et al. 2023 Fig. 4B).

    Returns:
        One row per pair with ``family``, ``a_star`` and the covered ``mvm_error_min`` /
        ``mvm_error_max``.
    """
    rows = []
    for workload, name, item, curve in _curves(summary):
        eps = curve["mvm_error_mean"].to_numpy(dtype=float)
        a = curve["a_star_mean"].to_numpy(dtype=float)
        value = math.nan
        for k in range(1, len(eps)):
            if eps[k - 1] <= target <= eps[k] and eps[k] > eps[k - 1]:
                frac = (target - eps[k - 1]) / (eps[k] - eps[k - 1])
                value = float(a[k - 1] + frac * (a[k] - a[k - 1]))
                break
        rows.append(
            {
                "workload": workload,
                "nonideality": name,
                "family": item.family,
                "a_star": value,
                "mvm_error_min": float(eps.min()),
                "mvm_error_max": float(eps.max()),
            }
        )
    return pd.DataFrame(rows)


def check_findings(
    summary: pd.DataFrame, equal_error: pd.DataFrame, rnn: str = "rnn"
) -> dict[str, Any]:
    """Test the paper's two findings on our numbers.

    1. At equal MVM error, input/output nonidealities hurt more than weight nonidealities:
       per workload, the mean A* at the target MVM error of the ``"input/output"`` family is
       below that of the ``"weight"`` family (pairs without a crossing are left out).
    2. RNNs are the most robust: the RNN workload has the highest mean A* over every
       non-standard sweep point that all workloads share.

    Args:
        summary: From :func:`summarize`.
        equal_error: From :func:`a_star_at_mvm_error`.
        rnn: Name of the RNN workload.

    Returns:
        ``io_vs_weight``: per workload ``{"input/output": A*, "weight": A*, "holds": bool or
        None}`` (None when a family has no crossing); ``io_worse_holds``: True if it holds for
        every workload with both families; ``robustness``: mean A* per workload;
        ``rnn_most_robust``: True/False, or None without an RNN or with a single workload.
    """
    io_vs_weight: dict[str, dict[str, Any]] = {}
    for workload, part in equal_error.groupby("workload", sort=False):
        means = part.dropna(subset=["a_star"]).groupby("family")["a_star"].mean()
        io = float(means["input/output"]) if "input/output" in means else math.nan
        weight = float(means["weight"]) if "weight" in means else math.nan
        holds = None if math.isnan(io) or math.isnan(weight) else bool(io < weight)
        io_vs_weight[str(workload)] = {"input/output": io, "weight": weight, "holds": holds}
    decided = [v["holds"] for v in io_vs_weight.values() if v["holds"] is not None]
    shared = summary
    workloads = list(pd.unique(summary["workload"]))
    if len(workloads) > 1:
        counts = summary.groupby(["nonideality", "scale"])["workload"].nunique()
        keep = counts[counts == len(workloads)].index
        shared = summary.set_index(["nonideality", "scale"]).loc[keep].reset_index()
    robustness = shared.groupby("workload")["a_star_mean"].mean()
    rnn_most = None
    if rnn in robustness.index and len(robustness) > 1:
        rnn_most = bool(robustness.idxmax() == rnn)
    return {
        "io_vs_weight": io_vs_weight,
        "io_worse_holds": bool(all(decided)) if decided else None,
        "robustness": {str(k): float(v) for k, v in robustness.items()},
        "rnn_most_robust": rnn_most,
    }


def describe_findings(findings: dict[str, Any], target: float) -> str:
    """The paper's two findings and whether our numbers support them, as text.

    Args:
        findings: From :func:`check_findings`.
        target: The MVM error of the equal-error comparison.
    """
    lines = [
        "Finding 1 (Rasch et al. 2023): at equal MVM error, input/output nonidealities hurt "
        "more than weight nonidealities.",
    ]
    for workload, row in findings["io_vs_weight"].items():
        verdict = {True: "holds", False: "does not hold", None: "undecided (no crossing)"}
        lines.append(
            f"  {workload}: A* at {target:.0%} MVM error, input/output {row['input/output']:.3f}"
            f" vs weight {row['weight']:.3f} -> {verdict[row['holds']]}"
        )
    overall = findings["io_worse_holds"]
    lines.append(
        "  overall: "
        + {True: "HOLDS here", False: "does NOT hold here", None: "cannot be decided"}[overall]
    )
    lines.append("Finding 2 (Rasch et al. 2023): RNNs are the most robust family.")
    ranking = sorted(findings["robustness"].items(), key=lambda kv: -kv[1])
    lines.append(
        "  mean A* over the shared sweep points: " + ", ".join(f"{w} {a:.3f}" for w, a in ranking)
    )
    most = findings["rnn_most_robust"]
    lines.append(
        "  overall: "
        + {True: "HOLDS here", False: "does NOT hold here", None: "cannot be decided"}[most]
    )
    return "\n".join(lines)


def relative_tolerance_table(
    summary: pd.DataFrame, table: pd.DataFrame, relative_drop: float
) -> pd.DataFrame:
    """Tolerances at A* within ``relative_drop`` of each workload's standard-model A*.

    The absolute threshold (A*_1h >= 99 %) says little for models that are not HWA-trained:
    their standard-model A* is already below it. This variant asks how far each knob can move
    before A* drops by more than ``relative_drop`` from the workload's own standard point.

    Args:
        summary: Output of :func:`summarize`.
        table: Point table of :func:`~analoglib.studies.nonideality_sensitivity.run_sweep`.
        relative_drop: Allowed A* drop, as a fraction (0.01 is one point of A*).

    Returns:
        The table of :func:`tolerance_table` at the per-workload thresholds.
    """
    if not isinstance(relative_drop, (int, float)) or not 0 <= relative_drop < 1:
        raise ValueError(
            f"relative_drop = {relative_drop!r} is not allowed: expected a fraction in [0, 1)."
        )
    levels = {w: a - relative_drop for w, a in baseline(table)["a_star_mean"].items()}
    return tolerance_table(summary, threshold=levels)


def results_metrics(
    summary: pd.DataFrame,
    tolerances: pd.DataFrame,
    equal_error: pd.DataFrame,
    findings: dict[str, Any],
    relative_tolerances: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Headline numbers of a sweep for the results JSON (NaN where undefined).

    Returns:
        ``scales`` and ``mvm_error`` per nonideality (grid values and mean MVM errors, which do
        not depend on the workload), and per workload: ``a_star_mean`` and ``a_star_std`` per
        nonideality (along the grid), ``tolerance``, ``a_star_at_equal_mvm_error``; plus the
        ``findings`` of :func:`check_findings`, and ``tolerance_relative`` per workload when
        ``relative_tolerances`` (:func:`relative_tolerance_table`) is given.
    """
    first = summary[summary["workload"] == summary["workload"].iloc[0]]
    scales = {str(n): part["scale"].tolist() for n, part in first.groupby("nonideality")}
    mvm = {str(n): part["mvm_error_mean"].tolist() for n, part in first.groupby("nonideality")}
    per_workload: dict[str, dict[str, Any]] = {}
    for workload, part in summary.groupby("workload"):
        per_workload[str(workload)] = {
            "a_star_mean": {
                str(n): p["a_star_mean"].tolist() for n, p in part.groupby("nonideality")
            },
            "a_star_std": {
                str(n): p["a_star_std"].tolist() for n, p in part.groupby("nonideality")
            },
        }
    for table, column, key in (
        (tolerances, "tolerance", "tolerance"),
        (equal_error, "a_star", "a_star_at_equal_mvm_error"),
    ):
        for record in table.itertuples():
            entry = per_workload[str(record.workload)].setdefault(key, {})
            entry[str(record.nonideality)] = float(getattr(record, column))
    out: dict[str, Any] = {
        "scales": scales,
        "mvm_error": mvm,
        "workloads": per_workload,
        "findings": {
            "io_worse_holds": findings["io_worse_holds"],
            "rnn_most_robust": findings["rnn_most_robust"],
            "robustness": findings["robustness"],
        },
    }
    if relative_tolerances is not None:
        out["tolerance_relative"] = {
            str(w): dict(zip(part["nonideality"], part["tolerance"], strict=True))
            for w, part in relative_tolerances.groupby("workload")
        }
    return out
