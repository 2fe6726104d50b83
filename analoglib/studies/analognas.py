"""Study of notebook 06: AnalogNAS (Benmeziane et al. 2023) on the published bench and ours.

Part 1 uses AnalogNAS-Bench (aihwkit-simulated CIFAR-10 results of all 15,625 NAS-Bench-201
cells, :func:`analoglib.nas.load_analognas_bench`): how much the digital ranking differs from
the ranking after HWA training and a day of drift (:func:`rank_change`), how well the
boosted-tree surrogate ranks held-out cells (:func:`surrogate_quality`), and how the surrogate
search compares with random search, a plain evolutionary search and picking the digital best
at equal numbers of true evaluations (:func:`search_comparison`), plus the trade-off the AVM
constraint buys (:func:`avm_tradeoff`). Part 2 evaluates architectures of the ResNet-like space
with our own simulator (:func:`analoglib.nas.evaluate_candidates`), relates width and depth to
the loss over a month (:func:`width_depth_table`) and compares the search's proposals with a
ResNet-20 baseline.

References:
    Benmeziane et al. 2023; ``docs/nas.md``; ``docs/published-results.md#analognas``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analoglib.cache import JsonlStore, json_normalized, key_digest
from analoglib.models.analognas_resnet import group_channels
from analoglib.nas import (
    NB201Space,
    ResNetLikeSpace,
    Surrogate,
    digital_best,
    evolutionary_search,
    kendall_tau,
    ndcg_at_k,
    parameter_count,
    random_search,
    search_surrogate,
    surrogate_search,
)
from analoglib.nas.evaluate import CandidateSpec
from analoglib.nas.search import SEARCH_REVISION
from analoglib.parallel import run_points
from analoglib.plotting import subplots
from analoglib.utils import derive_seed, paths

__all__ = [
    "BENCH_REFERENCE",
    "PUBLISHED_ANALOGNAS",
    "METHOD_LABELS",
    "BenchObjective",
    "SearchStudySpec",
    "avm_tradeoff",
    "draw_architectures",
    "kendall_tau_null_se",
    "own_space_metrics",
    "plot_avm_tradeoff",
    "plot_own_space",
    "plot_rank_change",
    "plot_search",
    "plot_surrogate",
    "proposals_metrics",
    "proposals_vs_baseline",
    "published_beside_ours",
    "rank_change",
    "rank_change_table",
    "search_comparison",
    "search_summary",
    "surrogate_quality",
    "width_depth_table",
]

#: The AnalogNAS paper's results (percent), to print beside ours (``docs/published-results.md``).
PUBLISHED_ANALOGNAS: dict[str, str] = {
    "T500 vs ResNet-32, 64-core PCM chip, CIFAR-10 (mean of 5)": "92.07 % vs 89.55 %",
    "simulated 1-day gain of T500 over ResNet-32": "+1.86 points",
    "1-month accuracy drop, T500 vs ResNet-32": "1.8 vs 5.04 points",
    "T100 vs ResNet-V1 (MLPerf Tiny): accuracy; 1-month drop": "+7.98 points; 5.14 vs 10.1",
    "T1M vs WRN (36.5 M): 1-day gain; 1-month drop": "+0.86 points; 1.16 vs 6.33",
    "search space sampled by the surrogate's training set": "~1,000 HWA-trained architectures",
    "lesson": "wider, shallower networks are more robust to drift",
}

#: Statistics of AnalogNAS-Bench computed independently for our reference notes (not by this
#: code), which :func:`rank_change` must reproduce (``docs/nas.md#analognas-bench``).
BENCH_REFERENCE: dict[str, float] = {
    "kendall_tau_digital_vs_hwa_1d": 0.66,
    "kendall_tau_direct_1d_vs_hwa_1d": 0.48,
    "top100_overlap": 18,
    "digital_best_baseline": 94.07,
    "digital_best_hwa_1d": 87.17,
    "digital_best_hwa_1d_rank": 1267,
    "hwa_best_hwa_1d": 90.53,
    "random_search_best_100": 88.96,
    "digital_best_of_100": 87.24,
    "kendall_tau_conv3x3_vs_loss": -0.42,
    "n_trainable_cells": 13169,
}

#: Legend labels of the searches.
METHOD_LABELS: dict[str, str] = {
    "surrogate": "AnalogNAS (surrogate + evolution)",
    "evolutionary": "evolution on true evaluations",
    "random": "random search",
    "digital_best": "digital best, deployed analog",
}

_DAY = "hwa_86400"


# ---- part 1: the published bench ----------------------------------------------------------
def rank_change(bench: pd.DataFrame, top: int = 100) -> dict[str, Any]:
    """How the digital ranking of the bench's cells differs from the HWA-1-day ranking.

    Returns:
        Kendall tau of digital (``baseline``) vs HWA-1-day accuracy and of direct-mapped vs
        HWA 1-day, the overlap of the two top-``top`` sets, the digital-best cell with its
        HWA-1-day accuracy and rank, the HWA-1-day-best cell, the median loss of the HWA
        models from 60 s to 30 days, and Kendall tau between the number of 3x3 convolutions
        and that loss among the cells with a digital accuracy above 85 %.
    """
    trained = bench[bench["baseline"] > 85]
    digital_best_i = int(bench["baseline"].idxmax())
    hwa_best_i = int(bench[_DAY].idxmax())
    hwa_rank = bench[_DAY].rank(ascending=False, method="min")
    top_digital = set(bench.nlargest(top, "baseline").index)
    top_hwa = set(bench.nlargest(top, _DAY).index)
    return {
        "n_cells": len(bench),
        "kendall_tau_digital_vs_hwa_1d": kendall_tau(bench["baseline"], bench[_DAY]),
        "kendall_tau_direct_1d_vs_hwa_1d": kendall_tau(bench["direct_86400"], bench[_DAY]),
        "top100_overlap": len(top_digital & top_hwa),
        "digital_best_cell": list(bench.loc[digital_best_i, "cell"]),
        "digital_best_baseline": float(bench.loc[digital_best_i, "baseline"]),
        "digital_best_hwa_1d": float(bench.loc[digital_best_i, _DAY]),
        "digital_best_hwa_1d_rank": int(hwa_rank[digital_best_i]),
        "hwa_best_cell": list(bench.loc[hwa_best_i, "cell"]),
        "hwa_best_baseline": float(bench.loc[hwa_best_i, "baseline"]),
        "hwa_best_hwa_1d": float(bench.loc[hwa_best_i, _DAY]),
        "median_hwa_loss_60s_to_30d": float(bench["avm_hwa"].median()),
        # "wider" on NB201: more 3x3 convolutions; among the trainable cells (as the notes)
        "kendall_tau_conv3x3_vs_loss": kendall_tau(trained["n_conv3x3"], trained["avm_hwa"]),
        "n_trainable_cells": len(trained),
    }


def rank_change_table(stats: dict[str, Any]) -> pd.DataFrame:
    """Our bench statistics beside :data:`BENCH_REFERENCE`."""
    rows = [
        {"quantity": name, "this run": stats[name], "reference notes": reference}
        for name, reference in BENCH_REFERENCE.items()
        if name in stats
    ]
    return pd.DataFrame(rows)


def plot_rank_change(bench: pd.DataFrame, stats: dict[str, Any]) -> plt.Figure:
    """Digital vs HWA-1-day accuracy of every cell, with the two best cells marked."""
    fig, ax = subplots(width="single", height_in=3.2)
    trained = bench[bench["baseline"] > 10.5]
    ax.scatter(
        trained["baseline"],
        trained[_DAY],
        s=2,
        alpha=0.25,
        color="0.5",
        lw=0,
        label=f"{len(trained):,} cells (untrainable ones hidden)",
    )
    for which, marker, color in (("digital_best", "s", "C3"), ("hwa_best", "*", "C0")):
        cell = tuple(stats[f"{which}_cell"])
        row = bench[bench["cell"] == cell].iloc[0]
        name = "digital best" if which == "digital_best" else "HWA-1-day best"
        ax.scatter(
            [row["baseline"]],
            [row[_DAY]],
            marker=marker,
            s=60,
            color=color,
            edgecolor="k",
            zorder=3,
            label=f"{name} {cell}: {row[_DAY]:.2f} %",
        )
    ax.set_xlim(80, 95)
    ax.set_ylim(60, 92)
    ax.set_xlabel("Digital test accuracy (%)")
    ax.set_ylabel("HWA accuracy after 1 day of drift (%)")
    ax.set_title(
        f"AnalogNAS-Bench, CIFAR-10 (aihwkit): Kendall τ = "
        f"{stats['kendall_tau_digital_vs_hwa_1d']:.2f},\n"
        f"top-100 overlap {stats['top100_overlap']}; the digital best ranks "
        f"{stats['digital_best_hwa_1d_rank']:,} after a day",
        fontsize="small",
    )
    ax.legend(fontsize="x-small", loc="lower right")
    return fig


def _bench_split(bench: pd.DataFrame, n_train: int, n_test: int, seed: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(bench))
    return bench.iloc[order[:n_train]], bench.iloc[order[n_train : n_train + n_test]]


def surrogate_quality(
    bench: pd.DataFrame,
    train_sizes: Sequence[int],
    n_seeds: int,
    seed: int,
    n_test: int = 2000,
) -> pd.DataFrame:
    """Held-out quality of the surrogate against its training-set size.

    For every size and seed, a random training set of bench cells trains the
    :class:`~analoglib.nas.Surrogate` (ranker on HWA 1-day accuracy, AVM regressor on the
    60 s to 30 d loss, std regressor on the 1-day spread), and ``n_test`` other random cells
    test it.

    Returns:
        One row per (size, seed): Kendall tau of the ranker, the AVM and the std predictor
        against the truth, and NDCG@100 of the ranker.
    """
    space = NB201Space()
    rows: list[dict[str, Any]] = []
    for n_train in train_sizes:
        for rep in range(n_seeds):
            point_seed = derive_seed(seed, "surrogate", int(n_train), rep)
            train, test = _bench_split(bench, int(n_train), n_test, point_seed)
            surrogate = Surrogate(seed=point_seed).fit(
                space.encode(train["cell"].tolist()),
                train[_DAY],
                train["avm_hwa"],
                train["hwa_86400_std"],
            )
            predicted = surrogate.predict(space.encode(test["cell"].tolist()))
            rows.append(
                {
                    "n_train": int(n_train),
                    "rep": rep,
                    "tau_accuracy": kendall_tau(predicted["score"], test[_DAY]),
                    "tau_avm": kendall_tau(predicted["avm"], test["avm_hwa"]),
                    "tau_std": kendall_tau(predicted["std"], test["hwa_86400_std"]),
                    "ndcg_100": ndcg_at_k(test[_DAY], predicted["score"], 100),
                }
            )
    return pd.DataFrame(rows)


def plot_surrogate(
    bench: pd.DataFrame, quality: pd.DataFrame, seed: int, n_test: int = 2000
) -> plt.Figure:
    """(a) predicted vs true rank on held-out cells at the largest size; (b) tau vs size."""
    space = NB201Space()
    n_train = int(quality["n_train"].max())
    train, test = _bench_split(bench, n_train, n_test, derive_seed(seed, "surrogate", n_train, 0))
    surrogate = Surrogate(seed=0).fit(space.encode(train["cell"].tolist()), train[_DAY])
    score = surrogate.predict(space.encode(test["cell"].tolist()))["score"]
    fig, (ax_a, ax_b) = subplots(1, 2, width="double", height_in=2.8)
    true_rank = test[_DAY].rank(ascending=False).to_numpy()
    predicted_rank = score.rank(ascending=False).to_numpy()
    ax_a.scatter(true_rank, predicted_rank, s=3, alpha=0.4, lw=0)
    ax_a.plot([1, len(test)], [1, len(test)], "k--", lw=0.8, label="perfect ranking")
    ax_a.set_xlabel("True rank by HWA 1-day accuracy (held out)")
    ax_a.set_ylabel("Rank predicted by the surrogate")
    ax_a.set_title(f"(a) trained on {n_train:,} cells, tested on {len(test):,}", fontsize="small")
    ax_a.legend(fontsize="x-small")
    stats = quality.groupby("n_train").agg(["mean", "sem"])
    for column, label in (
        ("tau_accuracy", "ranker: 1-day accuracy"),
        ("tau_avm", "regressor: 1-month loss (AVM)"),
        ("tau_std", "regressor: 1-day std"),
    ):
        ax_b.errorbar(
            stats.index,
            stats[(column, "mean")],
            yerr=stats[(column, "sem")],
            marker="o",
            ms=3,
            capsize=2,
            label=label,
        )
    ax_b.set_xscale("log")
    sizes = sorted(quality["n_train"].unique())
    ax_b.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax_b.xaxis.set_minor_locator(plt.NullLocator())
    ax_b.set_ylim(0, 1)
    ax_b.set_xlabel("Surrogate training set (bench cells)")
    ax_b.set_ylabel("Kendall τ on held-out cells")
    reps = int(quality["rep"].nunique())
    ax_b.set_title(f"(b) mean ± s.e. over {reps} random training sets", fontsize="small")
    ax_b.legend(fontsize="x-small", loc="lower right")
    fig.suptitle("XGBoost surrogate on AnalogNAS-Bench (CIFAR-10, aihwkit)", fontsize="small")
    return fig


class BenchObjective:
    """True evaluations on the bench: a cell's HWA 1-day accuracy (and AVM, std), by lookup."""

    def __init__(self, bench: pd.DataFrame) -> None:
        self.index = {cell: i for i, cell in enumerate(bench["cell"])}
        self.accuracy = bench[_DAY].to_numpy()
        self.avm = bench["avm_hwa"].to_numpy()
        self.std = bench["hwa_86400_std"].to_numpy()
        self.digital = bench["baseline"].to_numpy()

    def _rows(self, cells: list[Any]) -> np.ndarray:
        return np.array([self.index[tuple(c)] for c in cells], dtype=int)

    def __call__(self, cells: list[Any]) -> np.ndarray:
        return self.accuracy[self._rows(cells)]  # type: ignore[no-any-return]

    def table(self, cells: list[Any]) -> pd.DataFrame:
        rows = self._rows(cells)
        return pd.DataFrame(
            {"accuracy": self.accuracy[rows], "avm": self.avm[rows], "std": self.std[rows]}
        )

    def digital_accuracy(self, cells: list[Any]) -> np.ndarray:
        return self.digital[self._rows(cells)]  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class SearchStudySpec:
    """The bench search comparison: methods x budgets x seeds (every point stored at once).

    Attributes:
        budgets: True evaluations per search.
        n_seeds: Independent searches per method and budget.
        seed: Study seed (each point derives its own).
        train_fraction: Share of the budget that trains the surrogate.
        ea_population, ea_iterations: Evolution on the surrogate.
        true_population: Population of the evolution on true evaluations.
        max_avm: Limit on the predicted AVM (points; inf: none).
    """

    budgets: tuple[int, ...] = (20, 50, 100, 200)
    n_seeds: int = 20
    seed: int = 0
    train_fraction: float = 0.5
    ea_population: int = 200
    ea_iterations: int = 200
    true_population: int = 10
    max_avm: float = float("inf")

    def parameters(self) -> dict[str, Any]:
        return json_normalized(
            dataclasses.asdict(self) | {"format": 1, "search_revision": SEARCH_REVISION}
        )

    def default_path(self) -> Path:
        """``data/cache/nas_bench/<key>.jsonl``."""
        return paths.CACHE / "nas_bench" / f"{key_digest(self.parameters())}.jsonl"

    def points(self) -> list[tuple[str, int, int]]:
        return [
            (method, budget, rep)
            for budget in self.budgets
            for method in METHOD_LABELS
            for rep in range(self.n_seeds)
        ]


def _search_point(
    spec: SearchStudySpec, objective: BenchObjective, point: tuple[str, int, int]
) -> dict[str, Any]:
    method, budget, rep = point
    rng = np.random.default_rng(derive_seed(spec.seed, "search", method, budget, rep))
    space = NB201Space()
    if method == "random":
        trace = random_search(space, objective, budget, rng)
    elif method == "evolutionary":
        trace = evolutionary_search(
            space,
            objective,
            budget,
            rng,
            population=min(spec.true_population, budget),
            iterations=10 * budget,
        )
    elif method == "digital_best":
        trace = digital_best(space, objective.digital_accuracy, objective, budget, rng)
    else:
        trace = surrogate_search(
            space,
            objective.table,
            budget,
            rng,
            n_train=max(2, int(round(spec.train_fraction * budget))),
            population=spec.ea_population,
            iterations=spec.ea_iterations,
            max_avm=spec.max_avm,
            surrogate_seed=rep,
        )
    cell, best = trace.best
    return {
        "method": method,
        "budget": budget,
        "rep": rep,
        "best_hwa_1d": best,
        "best_cell": list(cell),
        "true_evaluations": budget if method == "digital_best" else len(trace),
    }


def search_comparison(
    bench: pd.DataFrame,
    spec: SearchStudySpec,
    path: str | Path | None = None,
    executor: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Best true HWA-1-day accuracy found by each method at each budget, over seeds.

    Points run through :func:`analoglib.parallel.run_points` and are appended to a resumable
    JSON-lines file as they finish; a rerun computes only the missing ones.

    Returns:
        One row per (method, budget, rep): ``best_hwa_1d``, ``best_cell`` and the number of
        true evaluations spent (the digital-best method spends its budget on digital ones).
    """
    store = JsonlStore(
        Path(path) if path is not None else spec.default_path(),
        spec.parameters(),
        key=lambda r: (r["method"], r["budget"], r["rep"]),
        columns=("method", "budget", "rep", "best_hwa_1d", "best_cell", "true_evaluations"),
        sort_by=["budget", "method", "rep"],
        what="search comparison",
    )
    objective = BenchObjective(bench)
    todo = [p for p in spec.points() if p not in store]
    run_points(
        functools.partial(_search_point, spec, objective),
        todo,
        lambda _p, record: store.append(record),
        executor,
        progress=progress,
        desc="searches",
    )
    return store.table()


def search_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard error of the best HWA-1-day accuracy per method and budget.

    ``surrogate_wins`` is the share of seeds on which the surrogate search found a better cell
    than the row's method.
    """
    stats = (
        results.groupby(["budget", "method"])["best_hwa_1d"]
        .agg(["mean", "sem", "count"])
        .reset_index()
    )
    wide = results.pivot_table(index=["budget", "rep"], columns="method", values="best_hwa_1d")
    wins = [
        {
            "budget": budget,
            "method": method,
            "surrogate_wins": float(
                (wide.loc[budget, "surrogate"] > wide.loc[budget, method]).mean()
            ),
        }
        for budget in wide.index.get_level_values(0).unique()
        for method in wide.columns
        if method != "surrogate" and "surrogate" in wide.columns
    ]
    return stats.merge(
        pd.DataFrame(wins, columns=["budget", "method", "surrogate_wins"]),
        on=["budget", "method"],
        how="left",
    )


def plot_search(results: pd.DataFrame, bench: pd.DataFrame) -> plt.Figure:
    """Best HWA-1-day accuracy found vs true evaluations, per method (mean ± s.e.)."""
    fig, ax = subplots(width="single", height_in=3.6)
    stats = results.groupby(["method", "budget"])["best_hwa_1d"].agg(["mean", "sem"])
    for i, (method, label) in enumerate(METHOD_LABELS.items()):
        if method not in stats.index.get_level_values(0):
            continue
        s = stats.loc[method]
        ax.errorbar(
            s.index * (1 + 0.03 * (i - 1.5)),
            s["mean"],
            yerr=s["sem"],
            marker="o",
            ms=3,
            capsize=2,
            label=label,
        )
    ax.axhline(
        bench[_DAY].max(),
        color="k",
        ls="--",
        lw=0.8,
        label=f"best of all {len(bench):,} cells ({bench[_DAY].max():.2f} %)",
    )
    ax.set_xscale("log")
    budgets = sorted(results["budget"].unique())
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("True evaluations (HWA-trained cells)")
    ax.set_ylabel("HWA 1-day accuracy of the best found (%)")
    reps = int(results["rep"].nunique())
    ax.set_title(f"Search on AnalogNAS-Bench, mean ± s.e. over {reps} seeds", fontsize="small")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return fig


def avm_tradeoff(
    bench: pd.DataFrame,
    max_avms: Sequence[float],
    n_train: int,
    n_verify: int,
    seed: int,
    population: int = 200,
    iterations: int = 200,
) -> pd.DataFrame:
    """Accuracy and month-long loss of the best proposal under each AVM limit.

    One surrogate is trained on ``n_train`` random cells; for every limit the evolutionary
    search runs on it with predicted AVM <= limit, and its ``n_verify`` best proposals are
    looked up truly.

    Returns:
        One row per limit: the best verified cell, its HWA 1-day accuracy and its true loss
        from 60 s to 30 days (points).
    """
    space = NB201Space()
    objective = BenchObjective(bench)
    train, _ = _bench_split(bench, n_train, 0, derive_seed(seed, "avm_train"))
    surrogate = Surrogate(seed=seed).fit(
        space.encode(train["cell"].tolist()), train[_DAY], train["avm_hwa"], train["hwa_86400_std"]
    )
    rows: list[dict[str, Any]] = []
    for limit in max_avms:
        trace = search_surrogate(
            space,
            surrogate,
            np.random.default_rng(derive_seed(seed, "avm_search")),
            population,
            iterations,
            max_avm=float(limit),
        )
        cells = trace.ranked()[:n_verify]
        if not cells:
            rows.append({"max_avm": float(limit), "feasible": 0})
            continue
        truth = objective.table(cells)
        best = int(truth["accuracy"].idxmax())
        rows.append(
            {
                "max_avm": float(limit),
                "feasible": len(trace),
                "best_cell": list(cells[best]),
                "hwa_1d": float(truth.loc[best, "accuracy"]),
                "true_avm": float(truth.loc[best, "avm"]),
                "mean_true_avm_of_proposals": float(truth["avm"].mean()),
            }
        )
    return pd.DataFrame(rows)


def plot_avm_tradeoff(tradeoff: pd.DataFrame, n_train: int) -> plt.Figure:
    """(a) best verified 1-day accuracy and (b) true 1-month losses, against the AVM limit."""
    fig, (ax_a, ax_b) = subplots(1, 2, width="double", height_in=2.6, sharex=True)
    shown = tradeoff.dropna(subset=["hwa_1d"])
    x = np.arange(len(shown))
    # a limit at or above 100 points cannot bind (accuracies are percentages)
    labels = ["none" if v >= 100 else f"{v:g}" for v in shown["max_avm"]]
    ax_a.plot(x, shown["hwa_1d"], "o-")
    ax_a.set_ylabel("HWA 1-day accuracy of the best (%)")
    ax_a.set_title("(a) best of the 10 verified proposals", fontsize="small")
    ax_b.plot(x, shown["true_avm"], "o-", label="the best proposal")
    ax_b.plot(x, shown["mean_true_avm_of_proposals"], "s--", label="mean of the 10 proposals")
    ax_b.set_ylim(
        0, max(2.0, 1.2 * float(shown[["true_avm", "mean_true_avm_of_proposals"]].max().max()))
    )
    ax_b.set_ylabel("True loss 60 s → 30 d (points)")
    ax_b.set_title("(b) their true 1-month loss", fontsize="small")
    ax_b.legend(fontsize="x-small")
    for ax in (ax_a, ax_b):
        ax.set_xticks(x, labels)
        ax.set_xlabel("Limit T_AVM on the predicted loss (points)")
    fig.suptitle(
        f"AVM constraint on AnalogNAS-Bench, surrogate trained on {n_train:,} cells",
        fontsize="small",
    )
    return fig


# ---- part 2: our simulator ----------------------------------------------------------------
def kendall_tau_null_se(n: int) -> float:
    """Standard deviation of Kendall's tau of ``n`` independent pairs (no ties).

    sqrt(2 (2n + 5) / (9 n (n - 1))): a tau more than two of these from 0 is unlikely to be
    chance (Kendall 1948).
    """
    if n < 2:
        raise ValueError(f"n = {n!r} is not allowed: expected at least 2 pairs.")
    return float(np.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))))


def width_depth_table(results: pd.DataFrame) -> pd.DataFrame:
    """Width and depth of every evaluated architecture beside its accuracy and drift loss.

    Depth is the number of convolution layers on the longest path (stem, two per block,
    classifier); width the mean channels per block.
    """
    table = results.copy()
    blocks = [table[f"R{i}"] * (table["M"] >= i) for i in range(1, 6)]
    table["depth"] = 2 + 2 * sum(blocks)
    widths = []
    for config in table.to_dict("records"):
        channels = group_channels(config)[1:]  # per group
        per_block = [c for i, c in enumerate(channels) for _ in range(int(config[f"R{i + 1}"]))]
        widths.append(float(np.mean(per_block)))
    table["width"] = widths
    return table


def plot_own_space(table: pd.DataFrame, first: str, last: str, title: str) -> plt.Figure:
    """(a) drift loss against depth and (b) against width; colour: parameters."""
    fig, axes = subplots(1, 2, width="double", height_in=2.8, sharey=True)
    for ax, column, label in (
        (axes[0], "depth", "Depth (convolution layers on the longest path)"),
        (axes[1], "width", "Width (mean channels per block)"),
    ):
        points = ax.scatter(
            table[column], table["avm"], c=np.log10(table["parameters"]), s=18, cmap="viridis"
        )
        tau = kendall_tau(table[column], table["avm"])
        ax.set_xlabel(label)
        se = kendall_tau_null_se(len(table))
        ax.set_title(
            f"Kendall τ({column}, loss) = {tau:+.2f} (chance: ±{se:.2f})", fontsize="small"
        )
    axes[0].set_ylabel(f"Accuracy loss {first} → {last} (points)")
    bar = fig.colorbar(points, ax=axes, shrink=0.8)
    bar.set_label("log10(parameters)")
    fig.suptitle(title, fontsize="small")
    return fig


def proposals_vs_baseline(
    results: pd.DataFrame,
    space: ResNetLikeSpace,
    spec: CandidateSpec,
    max_parameters: int,
    top_k: int,
    seed: int,
    population: int = 200,
    iterations: int = 200,
) -> list[dict[str, Any]]:
    """The surrogate's ``top_k`` proposals from the evaluated architectures.

    A :class:`~analoglib.nas.Surrogate` is trained on ``results`` (1-day accuracy, AVM, std);
    the evolutionary search runs on it with at most ``max_parameters`` parameters; the
    ``top_k`` best-scored configurations that were not evaluated yet are returned.
    """
    day = f"acc_{spec.t_inferences[1]:g}"
    records = results.to_dict("records")
    surrogate = Surrogate(seed=seed).fit(
        space.encode(records),
        results[day],
        results["avm"],
        results[f"std_{spec.t_inferences[1]:g}"],
    )
    in_channels = 1 if spec.dataset in ("digits", "fashion_mnist") else 3

    def feasible(configs: list[Any]) -> np.ndarray:
        return np.array([parameter_count(c, in_channels) <= max_parameters for c in configs])

    trace = search_surrogate(
        space,
        surrogate,
        np.random.default_rng(derive_seed(seed, "own_search")),
        population,
        iterations,
        feasible,
    )
    proposals = trace.ranked(space.key, {space.key(c) for c in records})
    return proposals[:top_k]


def draw_architectures(space: ResNetLikeSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` Latin-hypercube configurations of ``space``, each kept once.

    Over small discrete ranges a Latin hypercube can draw the same network twice.
    """
    drawn = space.latin_hypercube(np.random.default_rng(derive_seed(seed, "archs")), n)
    return list({space.key(c): c for c in drawn}.values())


def own_space_metrics(table: pd.DataFrame, day: str) -> dict[str, Any]:
    """Kendall tau of depth and width against the drift loss and of FP against 1-day accuracy.

    Args:
        table: :func:`width_depth_table` of the evaluated architectures.
        day: Column suffix of the 1-day accuracy (``acc_<day>``).
    """
    tau = {
        "depth_vs_loss": kendall_tau(table["depth"], table["avm"]),
        "width_vs_loss": kendall_tau(table["width"], table["avm"]),
        "fp_vs_analog_1d": kendall_tau(table["fp_accuracy"], table[f"acc_{day}"]),
    }
    return {
        "n_archs": len(table),
        "kendall_tau": tau,
        "kendall_tau_null_se": kendall_tau_null_se(len(table)),
        "median_loss_points": float(table["avm"].median()),
    }


def proposals_metrics(
    evaluated: pd.DataFrame, proposed: pd.DataFrame, references: pd.DataFrame, day: str
) -> dict[str, Any]:
    """The best proposal beside the two hand-designed references (1-day accuracy, loss).

    Args:
        evaluated: The architectures the surrogate was trained on.
        proposed: The evaluated proposals.
        references: The baseline and the size-matched baseline, in that order.
        day: Column suffix of the 1-day accuracy.
    """
    best = proposed.loc[proposed[f"acc_{day}"].astype(float).idxmax()]
    metrics: dict[str, Any] = {}
    for prefix, row in (("baseline", references.iloc[0]), ("small_baseline", references.iloc[1])):
        metrics[prefix] = row["model"]
        metrics[f"{prefix}_parameters"] = int(row["parameters"])
        metrics[f"{prefix}_acc_1d"] = float(row[f"acc_{day}"])
        metrics[f"{prefix}_loss_points"] = float(row["avm"])
    metrics.update(
        best_proposal_parameters=int(best["parameters"]),
        best_proposal_acc_1d=float(best[f"acc_{day}"]),
        best_proposal_loss_points=float(best["avm"]),
        best_of_evaluated_acc_1d=float(evaluated[f"acc_{day}"].max()),
    )
    return metrics


def published_beside_ours(
    rank_stats: dict[str, Any], proposals: dict[str, Any], own_space: dict[str, Any]
) -> pd.DataFrame:
    """The paper's results, the bench's and our simulator's, each labelled by its source."""
    bench = "AnalogNAS-Bench (this run)"
    ours = "our simulator, Fashion-MNIST stand-in"
    tau = own_space["kendall_tau"]
    rows = [
        {"source": "AnalogNAS paper", "quantity": k, "value": v}
        for k, v in PUBLISHED_ANALOGNAS.items()
    ]
    rows += [
        {
            "source": bench,
            "quantity": "Kendall τ digital vs HWA 1 day",
            "value": f"{rank_stats['kendall_tau_digital_vs_hwa_1d']:.2f}",
        },
        {
            "source": bench,
            "quantity": "digital best after 1 day: accuracy, rank",
            "value": f"{rank_stats['digital_best_hwa_1d']:.2f} %, "
            f"{rank_stats['digital_best_hwa_1d_rank']:,}",
        },
    ]
    for prefix, label in (("baseline", ""), ("small_baseline", " (similar size)")):
        rows.append(
            {
                "source": ours,
                "quantity": f"best proposal vs {proposals[prefix]}{label}: "
                "1-day accuracy; 1-month loss",
                "value": f"{100 * proposals['best_proposal_acc_1d']:.2f} % vs "
                f"{100 * proposals[f'{prefix}_acc_1d']:.2f} %; "
                f"{proposals['best_proposal_loss_points']:.2f} vs "
                f"{proposals[f'{prefix}_loss_points']:.2f} points",
            }
        )
    rows.append(
        {
            "source": ours,
            "quantity": "Kendall τ(depth, loss); τ(width, loss)",
            "value": f"{tau['depth_vs_loss']:+.2f}; {tau['width_vs_loss']:+.2f}",
        }
    )
    return pd.DataFrame(rows)
