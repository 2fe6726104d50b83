"""Study of notebook 05: pipeline training on analog accelerators (Wu et al. 2024/2026).

An 8-layer MLP is split into M tile-balanced stages (:func:`analoglib.pipeline.partition`) and
trained by the exact single-process executor (:class:`analoglib.pipeline.PipelineExecutor`)
with a synchronous (flushed, B micro-batches per update) or an asynchronous (1F1B, no flush, no
weight stashing, update after every backward) pipeline, for digital SGD, Analog SGD on
soft-bounds devices (two bounds tau) and Tiki-Taka. Every point (M, mode, rule) is one training
run, stored as it finishes in a resumable JSON-lines file (:func:`run_study`). From the runs:
accuracy against samples and against clock cycles (:func:`accuracy_curves`), clock cycles to a
target accuracy beside the closed forms (B + M - 1)/B and M (:func:`cycles_to_target`,
:func:`speedup_table`), measured staleness per stage beside M - m (:func:`staleness_table`),
and which of the paper's claims the numbers support (:func:`claims`).

Weights live in device units: each layer is ``scale * x W^T + b`` (:class:`ScaledLinear`) with
a fixed per-layer ``scale`` chosen so that the initial ``max |W| = omega``, as analog training
maps weights onto the conductance range (aihwkit's weight scaling). The bound tau of Analog SGD
and Tiki-Taka is therefore in the same units as ``omega``.

References:
    Wu et al. 2024/2026, arXiv 2410.15155; ``docs/pipeline.md``;
    ``docs/published-results.md#pipeline-training``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import math
import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from analoglib.cache import JsonlStore, key_digest
from analoglib.data.digits import load_digits
from analoglib.data.images import load_fashion_mnist
from analoglib.pipeline import (
    AnalogSGD,
    DigitalSGD,
    PipelineExecutor,
    TikiTaka,
    UpdateRule,
    build_schedule,
    partition,
)
from analoglib.plotting import subplots
from analoglib.utils import derive_seed, paths

__all__ = [
    "DATASETS",
    "PUBLISHED_PIPELINE",
    "STUDY_REVISION",
    "PipelineStudySpec",
    "ScaledLinear",
    "accuracy_curves",
    "build_model",
    "claims",
    "cycles_to_target",
    "final_accuracy",
    "headline_metrics",
    "load_data",
    "make_rule",
    "plot_accuracy",
    "plot_schedules",
    "plot_speedup",
    "plot_staleness",
    "published_beside_ours",
    "rule_keys",
    "rule_label",
    "run_point",
    "run_study",
    "speedup_table",
    "staleness_table",
    "study_store",
]

#: Datasets of the study: the offline stand-in, the smoke data and the paper's.
DATASETS: tuple[str, ...] = ("fashion_mnist", "digits")
#: Bump when a change of this module changes stored results (part of the store's header).
STUDY_REVISION = 1

#: The paper's statements beside which the notebook prints ours (``docs/published-results.md``).
PUBLISHED_PIPELINE: dict[str, str] = {
    "iteration complexity, Analog SGD with asynchronous pipeline": "O(eps^-2 + eps^-1)",
    "iteration complexity, digital SGD / synchronous Analog SGD": "O(eps^-2)",
    "clock-cycle speed-up, async over sync (authors' schedule)": "(B + M - 1) / B",
    "clock-cycle speed-up, async over no pipeline": "M",
    "staleness at stage m (authors' schedule)": "M - m",
    "experimental accuracies, models, stage counts": "not obtained (abstract only)",
}

_MODES = ("sync", "async")


@dataclasses.dataclass(frozen=True)
class PipelineStudySpec:
    """Data, model and training recipe shared by every point of the study.

    Attributes:
        dataset: ``"fashion_mnist"`` (offline stand-in of the paper's CIFAR-10) or ``"digits"``.
        data_source: ``"offline"`` or ``"hub"`` (Fashion-MNIST only).
        n_train: Training images (first ``n_train`` of a seeded permutation).
        n_test: Test images of every accuracy evaluation.
        hidden: Width of the hidden layers.
        n_layers: Linear layers of the MLP (``n_layers - 1`` hidden layers).
        omega: Initial ``max |W|`` per layer in device units (the weight scaling).
        micro_batch: Samples per micro-batch.
        microbatches_per_minibatch: B, micro-batches per synchronous update.
        epochs: Passes over the training images.
        lr: Learning rate (device units) of every rule.
        transfer_lr: Tiki-Taka's transfer rate per update.
        sync_lr_scaling: ``"linear"`` multiplies ``lr`` by B in the synchronous pipeline (one
            update of the mean over B micro-batches then moves the weights as far per sample
            as B asynchronous updates); ``"none"`` keeps ``lr``.
        eval_every: Evaluation period in micro-batches.
        seed: Seed of the data split, the shuffling and the initial weights (the same for
            every point).
    """

    dataset: str = "fashion_mnist"
    data_source: str = "offline"
    n_train: int = 20000
    n_test: int = 2000
    hidden: int = 256
    n_layers: int = 8
    omega: float = 0.5
    micro_batch: int = 16
    microbatches_per_minibatch: int = 8
    epochs: int = 2
    lr: float = 0.1
    transfer_lr: float = 0.1
    sync_lr_scaling: str = "linear"
    eval_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset = {self.dataset!r} is not allowed: expected {DATASETS}.")
        if self.data_source not in ("offline", "hub"):
            raise ValueError(
                f"data_source = {self.data_source!r} is not allowed: expected 'offline' or 'hub'."
            )
        if self.sync_lr_scaling not in ("linear", "none"):
            raise ValueError(
                f"sync_lr_scaling = {self.sync_lr_scaling!r} is not allowed: expected 'linear' "
                "or 'none'."
            )
        for name in ("n_train", "n_test", "hidden", "micro_batch", "epochs", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 1.")
        if self.n_layers < 2:
            raise ValueError(f"n_layers = {self.n_layers!r} is not allowed: expected >= 2.")
        if self.microbatches_per_minibatch < 1:
            raise ValueError(
                f"microbatches_per_minibatch = {self.microbatches_per_minibatch!r} is not "
                "allowed: expected an integer >= 1."
            )
        for name in ("omega", "lr", "transfer_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)!r} is not allowed: expected > 0.")

    def parameters(self) -> dict[str, Any]:
        """Every field plus the study revision (the results store's header)."""
        return {**dataclasses.asdict(self), "revision": STUDY_REVISION}


# ---- model, data and rules -----------------------------------------------------------------
class ScaledLinear(nn.Linear):
    """``y = scale * x W^T + b``: a linear layer whose weight lives in device units.

    The weight is drawn He-uniform (in ``+-sqrt(6/in_features)``, from
    ``generator``) and divided by a fixed ``scale`` (a buffer) so that its largest magnitude is
    ``omega``; the bias starts at 0 and is digital.

    Args:
        in_features: Inputs.
        out_features: Outputs.
        omega: Initial ``max |W|`` in device units.
        generator: Generator of the initial weight.
    """

    scale: Tensor  # () fixed weight scale, buffer

    def __init__(
        self, in_features: int, out_features: int, omega: float, generator: torch.Generator
    ) -> None:
        super().__init__(in_features, out_features)
        bound = math.sqrt(6.0 / in_features)  # He (Kaiming) uniform for ReLU networks
        weight = (torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound
        scale = weight.abs().max() / omega
        with torch.no_grad():
            self.weight.copy_(weight / scale)  # (out, in), device units
            self.bias.zero_()
        self.register_buffer("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, in) -> (batch, out)``."""
        return nn.functional.linear(x, self.weight) * self.scale + self.bias


def build_model(spec: PipelineStudySpec, in_features: int, classes: int) -> nn.Sequential:
    """The MLP ``in - hidden x (n_layers - 1) - classes`` with ReLU, every layer in device units.

    Each :class:`ScaledLinear` is an ``nn.Linear``, so the stages balance by crossbar tiles.
    """
    gen = torch.Generator().manual_seed(derive_seed(spec.seed, "pipeline_model"))
    widths = [in_features] + [spec.hidden] * (spec.n_layers - 1) + [classes]
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [ScaledLinear(a, b, spec.omega, gen), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@functools.lru_cache(maxsize=2)
def _images(dataset: str, data_source: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if dataset == "digits":
        split = load_digits(seed=0)
        return split.x_train, split.y_train, split.x_test, split.y_test
    images = load_fashion_mnist(data_source)
    return (
        torch.from_numpy(images.x_train).float() / 255.0,
        torch.from_numpy(images.y_train),
        torch.from_numpy(images.x_test).float() / 255.0,
        torch.from_numpy(images.y_test),
    )


def load_data(spec: PipelineStudySpec) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flattened, standardised ``(x_train, y_train, x_test, y_test)`` of ``spec``.

    Returns:
        ``x_train`` ``(n_train, features)``, ``y_train`` ``(n_train,)``, ``x_test``
        ``(n_test, features)``, ``y_test`` ``(n_test,)``; pixels standardised with the
        training mean and standard deviation.

    Raises:
        ValueError: If the dataset has fewer images than ``n_train`` or ``n_test``.
    """
    x_train, y_train, x_test, y_test = _images(spec.dataset, spec.data_source)
    if spec.n_train > len(x_train) or spec.n_test > len(x_test):
        raise ValueError(
            f"n_train = {spec.n_train}, n_test = {spec.n_test} is not allowed: {spec.dataset} "
            f"has {len(x_train)} training and {len(x_test)} test images."
        )
    gen = torch.Generator().manual_seed(derive_seed(spec.seed, "pipeline_split"))
    train = torch.randperm(len(x_train), generator=gen)[: spec.n_train]
    test = torch.randperm(len(x_test), generator=gen)[: spec.n_test]
    xt = x_train[train].flatten(1)  # (n_train, features)
    mean, std = xt.mean(), xt.std()
    return (
        (xt - mean) / std,
        y_train[train],
        (x_test[test].flatten(1) - mean) / std,  # (n_test, features)
        y_test[test],
    )


def rule_keys(update_rules: Sequence[str], taus: Sequence[float]) -> list[str]:
    """Point keys of the rules: ``"digital"``, ``"analog_<tau>"`` per tau, ``"tiki_taka"``.

    Raises:
        ValueError: For an unknown rule name.
    """
    keys: list[str] = []
    for name in update_rules:
        if name == "analog":
            keys += [f"analog_{float(tau):g}" for tau in taus]
        elif name in ("digital", "tiki_taka"):
            keys.append(name)
        else:
            raise ValueError(
                f"update_rules entry {name!r} is not allowed: expected 'digital', 'analog' or "
                "'tiki_taka'."
            )
    return keys


def rule_label(key: str, tiki_taka_tau: float | None = None) -> str:
    """Legend label of a rule key (e.g. ``"Analog SGD, tau = 0.6"``)."""
    if key == "digital":
        return "digital SGD"
    if key.startswith("analog_"):
        return f"Analog SGD, τ = {key.split('_', 1)[1]}"
    return "Tiki-Taka" + ("" if tiki_taka_tau is None else f", τ = {tiki_taka_tau:g}")


def make_rule(key: str, mode: str, spec: PipelineStudySpec, tiki_taka_tau: float) -> UpdateRule:
    """The update rule of a point.

    Under ``spec.sync_lr_scaling = "linear"`` the synchronous pipeline's ``lr`` (and
    Tiki-Taka's ``transfer_lr``) are multiplied by B, because it updates B times less often
    per sample.

    Raises:
        ValueError: For an unknown key or mode.
    """
    if mode not in _MODES:
        raise ValueError(f"mode = {mode!r} is not allowed: expected one of {_MODES}.")
    # linear scaling: one synchronous update stands for B asynchronous ones
    linear = mode == "sync" and spec.sync_lr_scaling == "linear"
    factor = spec.microbatches_per_minibatch if linear else 1
    if key == "digital":
        return DigitalSGD(spec.lr * factor)
    if key.startswith("analog_"):
        return AnalogSGD(spec.lr * factor, float(key.split("_", 1)[1]))
    if key == "tiki_taka":
        return TikiTaka(spec.lr * factor, spec.transfer_lr * factor, tiki_taka_tau)
    raise ValueError(
        f"rule key = {key!r} is not allowed: expected digital, analog_<tau>, tiki_taka."
    )


# ---- one training run per point --------------------------------------------------------------
#: A point: (spec, stages M, mode, rule key, Tiki-Taka's tau).
Point = tuple[PipelineStudySpec, int, str, str, float]


def _microbatches(spec: PipelineStudySpec, x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Shuffled micro-batches of every epoch (the same order for every point)."""
    out: list[tuple[Tensor, Tensor]] = []
    for epoch in range(spec.epochs):
        gen = torch.Generator().manual_seed(derive_seed(spec.seed, "pipeline_shuffle", epoch))
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - spec.micro_batch + 1, spec.micro_batch):
            rows = order[start : start + spec.micro_batch]
            out.append((x[rows], y[rows]))  # (micro_batch, features), (micro_batch,)
    return out


def _staleness_summary(staleness: dict[tuple[int, int], int], m: int) -> list[dict[str, Any]]:
    """Per stage: steady-state mean, min and max (micro-batches after the fill) and counts."""
    rows = []
    for s in range(m):
        values = [v for (stage, _), v in sorted(staleness.items()) if stage == s]
        steady = values[m - 1 - s :] or values  # the fill gives min(j, M - 1 - s)
        counts = {str(k): int(c) for k, c in zip(*np.unique(values, return_counts=True))}
        rows.append(
            {
                "stage": s + 1,
                "mean": float(np.mean(steady)),
                "min": int(min(steady)),
                "max": int(max(steady)),
                "counts": counts,
            }
        )
    return rows


def run_point(point: Point) -> dict[str, Any]:
    """Train one point with the executor; accuracy against samples and cycles, staleness.

    Args:
        point: ``(spec, M, mode, rule key, tiki_taka_tau)``.

    Returns:
        The record: ``stages``, ``mode``, ``rule``, per evaluation ``samples``, ``cycles`` and
        ``accuracy`` (the first at 0 samples), ``final_accuracy``, ``total_cycles``,
        ``n_microbatches``, ``staleness`` (per stage, :func:`staleness_table`'s source),
        ``updates`` (of the input stage), ``seconds``.
    """
    spec, m, mode, key, tiki_taka_tau = point
    start = time.perf_counter()
    x, y, x_test, y_test = load_data(spec)
    model = build_model(spec, x.shape[1], 10)
    stages = partition(model, m)
    executor = PipelineExecutor(
        stages, make_rule(key, mode, spec, tiki_taka_tau), nn.functional.cross_entropy
    )
    batches = _microbatches(spec, x, y)
    schedule = build_schedule(mode, m, len(batches), spec.microbatches_per_minibatch, order="1f1b")

    def accuracy() -> dict[str, float]:
        logits = model(x_test)  # (n_test, classes)
        return {"accuracy": float((logits.argmax(1) == y_test).float().mean())}

    with torch.no_grad():
        evals = [{"samples": 0, "cycles": 0.0, **accuracy()}]
    result = executor.run(schedule, batches, eval_fn=accuracy, eval_every=spec.eval_every)
    evals += [{"samples": e["samples"], "cycles": e["cycle"], **e} for e in result.evals]
    return {
        "stages": m,
        "mode": mode,
        "rule": key,
        "samples": [int(e["samples"]) for e in evals],
        "cycles": [float(e["cycles"]) for e in evals],
        "accuracy": [float(e["accuracy"]) for e in evals],
        "final_accuracy": float(evals[-1]["accuracy"]),
        "total_cycles": float(result.cycles),
        "n_microbatches": len(batches),
        "staleness": _staleness_summary(result.staleness, m),
        "updates": int(executor.versions[0]),
        "seconds": time.perf_counter() - start,
    }


def _point_key(record: dict[str, Any]) -> tuple[int, str, str]:
    return (int(record["stages"]), str(record["mode"]), str(record["rule"]))


def study_store(
    spec: PipelineStudySpec, tiki_taka_tau: float, path: str | Path | None = None
) -> JsonlStore:
    """The resumable results file (``data/cache/05_pipeline_training/<hash>.jsonl`` by default).

    The header holds ``spec``'s parameters and ``tiki_taka_tau``; a file of other parameters
    is refused, never mixed.
    """
    header = {**spec.parameters(), "tiki_taka_tau": float(tiki_taka_tau)}
    if path is None:
        path = paths.CACHE / "05_pipeline_training" / f"{key_digest(header)}.jsonl"
    return JsonlStore(Path(path), header, _point_key, what="pipeline training study")


def run_study(
    spec: PipelineStudySpec,
    stages: Sequence[int],
    modes: Sequence[str],
    rules: Sequence[str],
    tiki_taka_tau: float,
    path: str | Path | None = None,
    workers: int = 1,
    retrain: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every point (M, mode, rule) not stored yet; return all of them.

    Each finished point is appended (fsynced) to :func:`study_store`'s file, so an
    interrupted run resumes and a rerun returns the stored results.

    Args:
        spec: The shared recipe.
        stages: Stage counts M.
        modes: ``"sync"`` and/or ``"async"``.
        rules: Rule keys (:func:`rule_keys`).
        tiki_taka_tau: Bound of both Tiki-Taka arrays (device units).
        path: The results file (default: :func:`study_store`'s).
        workers: Processes training points in parallel (each with one torch thread).
        retrain: Delete the stored points first and train every point again.
        progress: Show a progress bar.

    Returns:
        One row per point (the records of :func:`run_point`), ordered by M, mode, rule.

    Raises:
        ValueError: For an unknown mode or ``workers < 1``.
    """
    for mode in modes:
        if mode not in _MODES:
            raise ValueError(f"modes entry {mode!r} is not allowed: expected one of {_MODES}.")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers = {workers!r} is not allowed: expected an integer >= 1.")
    if retrain:
        study_store(spec, tiki_taka_tau, path).path.unlink(missing_ok=True)
    store = study_store(spec, tiki_taka_tau, path)
    wanted = [(int(m), mode, key) for m in stages for mode in modes for key in rules]
    todo: list[Point] = [(spec, m, mode, key, float(tiki_taka_tau)) for m, mode, key in wanted]
    todo.sort(key=lambda p: -p[1])  # long runs (many stages) first balance the workers
    pool = None
    if workers > 1 and sum(k not in store for k in wanted) > 1:
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        store.compute_missing(
            run_point, todo, lambda p: p[1:4], pool, threads=1, progress=progress,
            desc="pipeline runs",
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
    return pd.DataFrame([store.records[k] for k in wanted])


# ---- analysis --------------------------------------------------------------------------
def accuracy_curves(table: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluation.

    Returns:
        ``stages``, ``mode``, ``rule``, ``samples``, ``cycles``, ``accuracy`` (fraction).
    """
    rows = [
        {
            "stages": r.stages,
            "mode": r.mode,
            "rule": r.rule,
            "samples": s,
            "cycles": c,
            "accuracy": a,
        }
        for r in table.itertuples()
        for s, c, a in zip(r.samples, r.cycles, r.accuracy)
    ]
    return pd.DataFrame(rows)


def _crossing(
    samples: Sequence[float], cycles: Sequence[float], acc: Sequence[float], target: float
) -> tuple[float, float]:
    """Samples and cycles at the first crossing of ``target``, linearly interpolated."""
    for i, a in enumerate(acc):
        if a >= target:
            if i == 0:
                return float(samples[0]), float(cycles[0])
            f = (target - acc[i - 1]) / (a - acc[i - 1])
            return (
                samples[i - 1] + f * (samples[i] - samples[i - 1]),
                cycles[i - 1] + f * (cycles[i] - cycles[i - 1]),
            )
    return math.nan, math.nan


def _smoothed(acc: Sequence[float], smooth: int) -> list[float]:
    """Trailing mean over ``smooth`` evaluations (fewer at the start)."""
    values = np.asarray(acc, dtype=float)
    return [float(values[max(0, i - smooth + 1) : i + 1].mean()) for i in range(len(values))]


def cycles_to_target(table: pd.DataFrame, target: float, smooth: int = 1) -> pd.DataFrame:
    """Samples and clock cycles until the test accuracy first reaches ``target``.

    Besides the trained modes, ``"none"`` (no pipeline, one micro-batch at a time, updated
    after each) is derived for every M from the asynchronous M = 1 run: both are per
    micro-batch SGD (the executor's test P1), and no pipeline takes 2M cycles per micro-batch
    against that run's 2, so its cycles are M times that run's.

    Args:
        table: :func:`run_study`'s rows.
        target: Accuracy (fraction) to reach.
        smooth: The accuracy is the trailing mean of this many evaluations (1: raw), so that
            one lucky evaluation does not decide the crossing.

    Returns:
        ``stages``, ``mode`` (``none``/``sync``/``async``), ``rule``, ``samples``, ``cycles``
        (NaN if never reached), ``derived`` (True for ``none``).
    """
    rows = []
    for r in table.itertuples():
        s, c = _crossing(r.samples, r.cycles, _smoothed(r.accuracy, smooth), target)
        rows.append(
            {
                "stages": r.stages,
                "mode": r.mode,
                "rule": r.rule,
                "samples": s,
                "cycles": c,
                "derived": False,
            }
        )
    base = {row["rule"]: row for row in rows if row["mode"] == "async" and row["stages"] == 1}
    for m in sorted(table["stages"].unique()):
        for rule, row in base.items():
            rows.append(
                {
                    "stages": int(m),
                    "mode": "none",
                    "rule": rule,
                    "samples": row["samples"],
                    "cycles": row["cycles"] * m,
                    "derived": True,
                }
            )
    order = {"none": 0, "sync": 1, "async": 2}
    df = pd.DataFrame(rows)
    return df.sort_values(
        ["rule", "stages", "mode"],
        key=lambda col: col.map(order) if col.name == "mode" else col,
        ignore_index=True,
    )


def speedup_table(ctt: pd.DataFrame, microbatches_per_minibatch: int) -> pd.DataFrame:
    """Measured clock-cycle speed-ups to the target beside the closed forms, per rule and M.

    Returns:
        ``rule``, ``stages``, ``sync_over_async`` (cycles to target, sync / async) beside
        ``closed_sync_over_async`` = (B + M - 1)/B, ``none_over_async`` beside
        ``closed_none_over_async`` = M, and ``samples_sync_over_async`` (the samples part).
    """
    b = microbatches_per_minibatch
    pivot_c = ctt.pivot_table(index=["rule", "stages"], columns="mode", values="cycles")
    pivot_s = ctt.pivot_table(index=["rule", "stages"], columns="mode", values="samples")
    rows = []
    for (rule, m), row in pivot_c.iterrows():
        get = row.get
        rows.append(
            {
                "rule": rule,
                "stages": int(m),
                "sync_over_async": get("sync", math.nan) / get("async", math.nan),
                "closed_sync_over_async": (b + m - 1) / b,
                "none_over_async": get("none", math.nan) / get("async", math.nan),
                "closed_none_over_async": float(m),
                "samples_sync_over_async": pivot_s.loc[(rule, m)].get("sync", math.nan)
                / pivot_s.loc[(rule, m)].get("async", math.nan),
            }
        )
    return pd.DataFrame(rows)


def staleness_table(table: pd.DataFrame) -> pd.DataFrame:
    """Measured staleness per stage beside M - m (async) and 0 (sync).

    Returns:
        One row per (M, mode, stage m), over the runs of every rule (the schedule fixes the
        staleness, so they agree): steady-state ``mean``, ``min``, ``max`` and ``expected``.
    """
    rows = []
    for r in table.itertuples():
        for st in r.staleness:
            expected = r.stages - st["stage"] if r.mode == "async" else 0
            rows.append(
                {
                    "stages": r.stages,
                    "mode": r.mode,
                    "rule": r.rule,
                    "stage": st["stage"],
                    "mean": st["mean"],
                    "min": st["min"],
                    "max": st["max"],
                    "expected": expected,
                }
            )
    df = pd.DataFrame(rows)
    return df.groupby(["stages", "mode", "stage"], as_index=False).agg(
        mean=("mean", "mean"),
        min=("min", "min"),
        max=("max", "max"),
        expected=("expected", "first"),
    )


def final_accuracy(table: pd.DataFrame, smooth: int = 1) -> pd.DataFrame:
    """End-of-training test accuracy (%): the mean of the last ``smooth`` evaluations.

    Returns:
        Index ``(stages, rule)``, one column per mode.
    """
    df = table.assign(end=[100 * float(np.mean(a[-smooth:])) for a in table["accuracy"]])
    return df.pivot_table(index=["stages", "rule"], columns="mode", values="end")


def claims(
    table: pd.DataFrame,
    speed: pd.DataFrame,
    stale: pd.DataFrame,
    tolerance_points: float = 1.0,
    smooth: int = 1,
) -> dict[str, Any]:
    """Which of the paper's claims the runs support, with the numbers behind each verdict.

    * ``async_free_in_samples``: at equal samples the asynchronous pipeline ends within
      ``tolerance_points`` of the synchronous one for every rule and M (max gap reported),
      and reaches the target within 25 % of the synchronous samples where both reach it;
    * ``async_saves_cycles``: at M > 1, sync and no pipeline need more cycles to the target
      than async for every rule (the deviation of sync/async from (B + M - 1)/B, which comes
      from the samples each needs, is reported);
    * ``staleness_matches_m_minus_m``: steady-state staleness equals M - m (async), 0 (sync);
    * ``asymmetry_limits_analog_sgd``: Analog SGD at the smaller tau ends below digital SGD by
      more than ``tolerance_points`` in the synchronous pipeline too (no staleness), and by
      more than its own async-sync gap;
    * ``tiki_taka_removes_limit``: Tiki-Taka's gap to digital SGD is smaller than Analog SGD's.

    Args:
        table: :func:`run_study`'s rows.
        speed: :func:`speedup_table`'s rows.
        stale: :func:`staleness_table`'s rows.
        tolerance_points: Accuracy gap (percentage points) below which two runs count as equal.
        smooth: End accuracy is the mean of the last ``smooth`` evaluations.

    Returns:
        ``{claim: {"holds": bool, ...numbers}}``; a claim without the needed runs is omitted.
    """
    out: dict[str, Any] = {}
    final = final_accuracy(table, smooth)  # percent
    if {"sync", "async"} <= set(final.columns):
        gap = (final["async"] - final["sync"]).dropna()
        speed_ok = speed.dropna(subset=["samples_sync_over_async"])
        ratio = (1 / speed_ok["samples_sync_over_async"]) if len(speed_ok) else pd.Series([])
        out["async_free_in_samples"] = {
            "holds": bool((gap.abs() <= tolerance_points).all() and (ratio <= 1.25).all()),
            "max_abs_final_gap_points": round(float(gap.abs().max()), 3),
            "mean_final_gap_points": round(float(gap.mean()), 3),
            "max_samples_async_over_sync": round(float(ratio.max()), 3) if len(ratio) else None,
        }
        multi = speed[(speed["stages"] > 1)].dropna(subset=["sync_over_async"])
        if len(multi):
            rel = multi["sync_over_async"] / multi["closed_sync_over_async"] - 1
            out["async_saves_cycles"] = {
                "holds": bool(
                    (multi["sync_over_async"] > 1).all() and (multi["none_over_async"] > 1).all()
                ),
                "min_sync_over_async": round(float(multi["sync_over_async"].min()), 3),
                "max_relative_deviation_from_closed_form": round(float(rel.abs().max()), 3),
            }
    out["staleness_matches_m_minus_m"] = {
        "holds": bool(
            (
                (stale["mean"] == stale["expected"])
                & (stale["min"] == stale["expected"])
                & (stale["max"] == stale["expected"])
            ).all()
        ),
    }
    analog = sorted(
        r for r in final.index.get_level_values("rule").unique() if r.startswith("analog_")
    )
    if "digital" in final.index.get_level_values("rule") and analog and "sync" in final.columns:
        by_rule = final.groupby(level="rule").mean()  # mean over M
        worst = analog[0]  # smallest tau sorts first for taus < 10
        gap_sync = float(by_rule.loc["digital", "sync"] - by_rule.loc[worst, "sync"])
        stale_gap = (
            float(abs(by_rule.loc[worst, "async"] - by_rule.loc[worst, "sync"]))
            if "async" in by_rule.columns
            else 0.0
        )
        out["asymmetry_limits_analog_sgd"] = {
            "holds": bool(gap_sync > tolerance_points and gap_sync > stale_gap),
            "rule": worst,
            "digital_minus_analog_sync_points": round(gap_sync, 3),
            "analog_async_minus_sync_points": round(stale_gap, 3),
            "gaps_by_rule_points": {
                r: round(float((by_rule.loc["digital"] - by_rule.loc[r]).mean()), 3)
                for r in by_rule.index
                if r != "digital"
            },
        }
        if "tiki_taka" in by_rule.index:
            tt = float((by_rule.loc["digital"] - by_rule.loc["tiki_taka"]).mean())
            sgd = float((by_rule.loc["digital"] - by_rule.loc[worst]).mean())
            out["tiki_taka_removes_limit"] = {
                "holds": bool(tt < sgd),
                "digital_minus_tiki_taka_points": round(tt, 3),
                "digital_minus_analog_points": round(sgd, 3),
            }
    return out


def published_beside_ours(
    speed: pd.DataFrame, stale: pd.DataFrame, verdicts: dict[str, Any]
) -> pd.DataFrame:
    """The paper's statements (:data:`PUBLISHED_PIPELINE`) beside our measurements."""
    digital = speed[speed["rule"] == speed["rule"].iloc[0]] if len(speed) else speed
    ratios = ", ".join(
        f"M={r.stages}: {r.sync_over_async:.2f} (closed {r.closed_sync_over_async:.2f})"
        for r in digital.itertuples()
    )
    none = ", ".join(f"M={r.stages}: {r.none_over_async:.2f}" for r in digital.itertuples())
    async_rows = stale[stale["mode"] == "async"]
    ok = bool((async_rows["mean"] == async_rows["expected"]).all())
    gap = verdicts.get("async_free_in_samples", {}).get("mean_final_gap_points", "n/a")
    shown_rule = str(digital["rule"].iloc[0]) if len(digital) else ""
    ours = {
        "iteration complexity, Analog SGD with asynchronous pipeline": (
            f"not fitted; final-accuracy gap async - sync {gap} points"
        ),
        "iteration complexity, digital SGD / synchronous Analog SGD": "(same runs)",
        "clock-cycle speed-up, async over sync (authors' schedule)": f"{ratios} [{shown_rule}]",
        "clock-cycle speed-up, async over no pipeline": none,
        "staleness at stage m (authors' schedule)": (
            "M - m at every stage" if ok else "differs (see the staleness table)"
        ),
        "experimental accuracies, models, stage counts": "Fashion-MNIST MLP stand-in (above)",
    }
    return pd.DataFrame(
        [{"quantity": k, "paper": v, "ours": ours[k]} for k, v in PUBLISHED_PIPELINE.items()]
    )


# ---- figures ---------------------------------------------------------------------------
_MODE_STYLE = {"none": ":", "sync": "--", "async": "-"}


def plot_schedules(
    num_stages: int = 4, microbatches_per_minibatch: int = 5, cycles: int = 32
) -> Figure:
    """The three schedules drawn from the executor's own event log (the authors' figure).

    One row per mode; one box per F or B event (cycle, stage), labelled with the micro-batch
    (1-based); a bar at the end of a box marks an update (U). Stage 1 (input) is on top.

    Args:
        num_stages: M (the authors draw 4).
        microbatches_per_minibatch: B of the synchronous pipeline (the authors draw 5).
        cycles: Clock cycles shown.
    """
    m, b = num_stages, microbatches_per_minibatch
    schedules = {
        "without pipeline": build_schedule("none", m, max(1, cycles // (2 * m) + 1), 1),
        f"synchronous (B = {b})": build_schedule("sync", m, 2 * b, b, order="1f1b"),
        "asynchronous": build_schedule("async", m, max(m, cycles // 2)),
    }
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = subplots(
        len(schedules), 1, width="double", height_in=1.3 * len(schedules), sharex=True
    )
    for ax, (title, schedule) in zip(axes, schedules.items()):
        updates = 0
        for e in schedule.events:
            row = m - 1 - e.stage  # stage 1 on top
            if e.op == "U":
                if e.cycle < cycles:
                    updates += 1
                    ax.plot(
                        [e.cycle + 1, e.cycle + 1],
                        [row + 0.05, row + 0.95],
                        color=colors[3],
                        lw=1.5,
                    )
                continue
            if e.cycle >= cycles:
                continue
            face = colors[0] if e.op == "F" else colors[1]
            ax.add_patch(
                Rectangle(
                    (e.cycle, row + 0.1),
                    1,
                    0.8,
                    facecolor=face,
                    edgecolor="white",
                    alpha=0.35 if e.op == "F" else 0.6,
                )
            )
            ax.text(
                e.cycle + 0.5,
                row + 0.5,
                f"{e.op}{e.micro_batch + 1}",
                ha="center",
                va="center",
                fontsize=5,
            )
        ax.set_ylim(0, m)
        ax.set_yticks([i + 0.5 for i in range(m)], [str(m - i) for i in range(m)])
        ax.set_ylabel("stage m")
        ax.set_title(
            f"{title}: {schedule.cycles} cycles for {schedule.num_microbatches} "
            "micro-batches (event log)",
            fontsize=8,
        )
    axes[-1].set_xlim(0, cycles)
    axes[-1].set_xlabel("clock cycle")
    handles = [
        Rectangle((0, 0), 1, 1, facecolor=colors[0], alpha=0.35),
        Rectangle((0, 0), 1, 1, facecolor=colors[1], alpha=0.6),
        plt.Line2D([], [], color=colors[3], lw=1.5),
    ]
    fig.legend(
        handles, ["forward", "backward", "update"], loc="outside lower center", ncol=3, fontsize=6
    )
    return fig


def plot_accuracy(curves: pd.DataFrame, rules: Sequence[str], tiki_taka_tau: float) -> Figure:
    """Test accuracy against samples (left) and clock cycles (right), one row per rule.

    Colour: M; line style: sync (dashed) or async (solid).
    """
    stages = sorted(curves["stages"].unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = subplots(
        len(rules), 2, width="double", height_in=1.6 * len(rules) + 0.4, sharey=True, squeeze=False
    )
    for row, rule in zip(axes, rules):
        part = curves[curves["rule"] == rule]
        for (m, mode), run in part.groupby(["stages", "mode"]):
            style = {
                "color": colors[stages.index(m) % len(colors)],
                "ls": _MODE_STYLE[str(mode)],
                "lw": 1.0,
            }
            label = f"M = {m}, {mode}"
            row[0].plot(run["samples"], 100 * run["accuracy"], label=label, **style)
            row[1].plot(run["cycles"], 100 * run["accuracy"], **style)
        row[0].set_ylabel(f"{rule_label(rule, tiki_taka_tau)}\ntest accuracy (%)", fontsize=7)
        row[1].set_ylabel("test accuracy (%)", fontsize=7)
        row[0].set_xlabel("training samples")
        row[1].set_xlabel("clock cycles")
    axes[0][0].legend(fontsize=6, ncol=2)
    return fig


def plot_speedup(
    ctt: pd.DataFrame,
    speed: pd.DataFrame,
    target: float,
    microbatches_per_minibatch: int,
    tiki_taka_tau: float,
) -> Figure:
    """Cycles to the target vs M per mode (left) and measured speed-ups vs closed forms (right)."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP"
    rules = list(dict.fromkeys(ctt["rule"]))
    fig, (left, right) = subplots(1, 2, width="double", height_in=2.6)
    for i, rule in enumerate(rules):
        for j, mode in enumerate(("none", "sync", "async")):
            part = ctt[(ctt["rule"] == rule) & (ctt["mode"] == mode)].dropna(subset=["cycles"])
            if len(part):
                left.plot(
                    part["stages"],
                    part["cycles"],
                    marker=markers[i % len(markers)],
                    color=colors[j],
                    ls=_MODE_STYLE[mode],
                    ms=3,
                    lw=0.8,
                    label=f"{mode}" if i == 0 else None,
                )
    left.set_yscale("log")
    left.set_xlabel("stages M")
    left.set_ylabel(f"clock cycles to {100 * target:g} % accuracy")
    left.legend(fontsize=6, title="markers: rules", title_fontsize=6)
    ms = np.array(sorted(speed["stages"].unique()), dtype=float)
    grid = np.linspace(ms.min(), ms.max(), 50)
    b = microbatches_per_minibatch
    right.plot(grid, (b + grid - 1) / b, color=colors[1], lw=1, label="(B + M − 1)/B")
    right.plot(grid, grid, color=colors[0], lw=1, ls=":", label="M")
    for i, rule in enumerate(rules):
        part = speed[speed["rule"] == rule]
        mk = markers[i % len(markers)]
        right.plot(
            part["stages"],
            part["sync_over_async"],
            mk,
            color=colors[1],
            ms=3,
            label=rule_label(rule, tiki_taka_tau),
        )
        right.plot(part["stages"], part["none_over_async"], mk, color=colors[0], ms=3, mfc="none")
    right.set_yscale("log")
    right.set_yticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    right.set_xlabel("stages M")
    right.set_ylabel("cycles to target, ratio to async")
    right.legend(fontsize=5.5)
    return fig


def plot_staleness(stale: pd.DataFrame) -> Figure:
    """Measured staleness per stage (steady state, bar: mean, whiskers: min-max) vs M - m."""
    ms = sorted(m for m in stale["stages"].unique() if m > 1) or sorted(stale["stages"].unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = subplots(1, len(ms), width="double", height_in=2.2, squeeze=False)
    for ax, m in zip(axes[0], ms):
        for k, mode in enumerate(("sync", "async")):
            part = stale[(stale["stages"] == m) & (stale["mode"] == mode)]
            if not len(part):
                continue
            offset = -0.2 if mode == "sync" else 0.2
            err = [part["mean"] - part["min"], part["max"] - part["mean"]]
            ax.bar(
                part["stage"] + offset,
                part["mean"],
                width=0.4,
                color=colors[k + 1],
                alpha=0.7,
                yerr=err,
                capsize=2,
                label=f"measured, {mode}",
            )
        stages = np.arange(1, m + 1)
        ax.plot(stages + 0.2, m - stages, "k_", ms=8, mew=1.5, label="M − m")
        ax.set_title(f"M = {m}", fontsize=8)
        ax.set_xlabel("stage m")
        ax.set_xticks(stages)
        ax.set_ylabel("updates between F and B")
    axes[0][0].legend(fontsize=6)
    return fig


def _clean(value: Any) -> Any:
    """Rounded floats, NaN as None (JSON), recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def headline_metrics(
    table: pd.DataFrame,
    ctt: pd.DataFrame,
    speed: pd.DataFrame,
    stale: pd.DataFrame,
    verdicts: dict[str, Any],
    smooth: int = 1,
) -> dict[str, Any]:
    """The results JSON's metrics.

    Final accuracy (%, mean of the last ``smooth`` evaluations) per point, cycles to target,
    speed-ups, staleness per stage and the claims' verdicts; NaN is written as null.
    """
    end = final_accuracy(table, smooth)
    final = {
        f"M{m}_{mode}_{rule}": end.loc[(m, rule), mode]
        for (m, rule) in end.index
        for mode in end.columns
    }
    return _clean(
        {
            "final_accuracy": final,
            "cycles_to_target": ctt.drop(columns="derived").to_dict("records"),
            "speedup": speed.to_dict("records"),
            "staleness": stale.to_dict("records"),
            "claims": verdicts,
            "train_minutes": float(table["seconds"].sum() / 60),
        }
    )
