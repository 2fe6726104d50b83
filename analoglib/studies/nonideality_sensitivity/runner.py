"""The resumable sweep runner: spec, point identities and seeds, the results file, the points.

One JSON line per finished point, appended and fsynced to
``data/cache/sweeps/<hash of the spec>.jsonl``; a rerun skips finished points, tolerates a
torn last line and refuses a file of another spec. Points are independent: each is seeded from
``(seed, workload, nonideality, value, rep)`` alone, so they may run in any order, in this
process or spread over a cluster (``executor``), and give the same table.

References:
    Rasch et al. 2023; ``docs/model.md#standard-model``, ``docs/model.md#metrics``,
    ``docs/published-results.md#rasch-2023``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from analoglib.cache import SIMULATION_REVISION, JsonlStore
from analoglib.config import PCMConfig
from analoglib.inference import drift, program, set_forward_seed
from analoglib.metrics import random_tile_mvm_error
from analoglib.nn.convert import convert_to_analog, replace_config
from analoglib.optim import calibrate_input_ranges
from analoglib.parallel import run_points
from analoglib.presets import standard_hwa_2023
from analoglib.studies.nonideality_sensitivity.registry import (
    FORMAT_VERSION,
    NONIDEALITIES,
    STANDARD,
    config_of,
    get_nonideality,
)
from analoglib.utils import PROFILES, check_int, derive_seed, paths
from analoglib.workloads import cache_path, cached_metrics, load_workload, train_fp

__all__ = [
    "compute_point",
    "ensure_fp_checkpoints",
    "SweepFile",
    "SweepSpec",
    "evaluate_point",
    "point_key",
    "point_seed",
    "prepare_workload",
    "run_sweep",
]


log = logging.getLogger(__name__)


# -- the spec and its file -----------------------------------------------------------------------
@dataclass(frozen=True)
class SweepSpec:
    """Everything that determines the results of a sweep (and names its file).

    Attributes:
        workloads: Workload names (:func:`analoglib.workloads.load_workload`).
        grids: Grid values per nonideality name: factors, bits or absolute values (see
            :class:`Nonideality`). A standard value in a grid is not evaluated again: the
            standard model's points (``"standard"``) stand for it.
        n_reps: Independent programming repetitions per point.
        seed: Base seed of every noise draw.
        profile: Workload profile (``"smoke"``, ``"default"``, ``"paper"``).
        data_source: ``"offline"`` or ``"hub"``.
        t_inference_s: Time after programming of the evaluation and the MVM error (s).
        workload_overrides: Extra workload parameters per workload name (e.g. a smaller
            evaluation subset, ``{"cnn": {"max_eval_batches": 2}}``); evaluation-only
            parameters keep the cached FP checkpoint.
        fp_seed: Seed of the workloads (their cached FP checkpoints).
        device: ``"cpu"`` or ``"cuda"``: where the workloads are evaluated (noise draws differ
            between the two, so it is part of the results' identity). The random-tile MVM error
            is always computed on the CPU.
        calibration_batches: Training batches of the input-range calibration.
        calibration_percentile: Percentile of the calibrated input ranges.
        calibration_samples: Input vectors sampled per tile by the calibration.
        mvm_vectors: Input vectors of the random-tile MVM error.
        mvm_size: Rows and columns of the random tile.
    """

    workloads: tuple[str, ...]
    grids: Mapping[str, tuple[float, ...]]
    n_reps: int = 3
    seed: int = 0
    profile: str = "default"
    data_source: str = "offline"
    t_inference_s: float = 3600.0
    workload_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    fp_seed: int = 0
    device: str = "cpu"
    calibration_batches: int = 10
    calibration_percentile: float = 99.995
    calibration_samples: int = 1000
    mvm_vectors: int = 1000
    mvm_size: int = 512

    def __post_init__(self) -> None:
        if isinstance(self.workloads, str) or not self.workloads:
            raise ValueError(
                f"workloads = {self.workloads!r} is not allowed: expected a non-empty list of "
                "workload names."
            )
        object.__setattr__(self, "workloads", tuple(self.workloads))
        if not self.grids:
            raise ValueError("grids = {} is not allowed: expected at least one nonideality.")
        grids = {}
        for name, values in self.grids.items():
            item = get_nonideality(name)
            if isinstance(values, (str, bytes)) or not len(values):
                raise ValueError(
                    f"grids[{name!r}] = {values!r} is not allowed: expected a non-empty list."
                )
            grids[name] = tuple(item.check_value(v) for v in values)
        object.__setattr__(self, "grids", grids)
        check_int("n_reps", self.n_reps, 1)
        check_int("seed", self.seed, 0)
        check_int("fp_seed", self.fp_seed, 0)
        check_int("calibration_batches", self.calibration_batches, 1)
        check_int("calibration_samples", self.calibration_samples, 1)
        check_int("mvm_vectors", self.mvm_vectors, 1)
        check_int("mvm_size", self.mvm_size, 1)
        if self.profile not in PROFILES:
            raise ValueError(
                f"profile = {self.profile!r} is not allowed: expected one of {', '.join(PROFILES)}."
            )
        t = self.t_inference_s
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(
                f"t_inference_s = {t!r} is not allowed: expected a finite time >= 0 s."
            )
        if self.device not in ("cpu", "cuda"):
            raise ValueError(
                f"device = {self.device!r} is not allowed: expected 'cpu' or 'cuda' (the "
                "device type; resolve 'auto' with analoglib.get_device first)."
            )
        unknown = sorted(set(self.workload_overrides) - set(self.workloads))
        if unknown:
            raise ValueError(
                f"workload_overrides names {unknown}, which are not among workloads = "
                f"{list(self.workloads)}."
            )

    @property
    def nonidealities(self) -> tuple[str, ...]:
        """Swept nonideality names, in grid order."""
        return tuple(self.grids)

    def parameters(self) -> dict[str, Any]:
        """Plain JSON-able dict of the spec (recorded in the file's header)."""
        return json.loads(
            json.dumps(
                {
                    "format": FORMAT_VERSION,
                    "simulation": SIMULATION_REVISION,
                    "workloads": list(self.workloads),
                    "grids": {k: list(v) for k, v in self.grids.items()},
                    "n_reps": self.n_reps,
                    "seed": self.seed,
                    "profile": self.profile,
                    "data_source": self.data_source,
                    "t_inference_s": float(self.t_inference_s),
                    "workload_overrides": {k: dict(v) for k, v in self.workload_overrides.items()},
                    "fp_seed": self.fp_seed,
                    "device": self.device,
                    "calibration": {
                        "batches": self.calibration_batches,
                        "percentile": self.calibration_percentile,
                        "samples": self.calibration_samples,
                    },
                    "mvm": {"vectors": self.mvm_vectors, "size": self.mvm_size},
                },
                sort_keys=True,
            )
        )

    def key(self) -> str:
        """16-hex-digit hash of :meth:`parameters` (names the file)."""
        text = json.dumps(self.parameters(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def default_path(self) -> Path:
        """``data/cache/sweeps/<key>.jsonl``."""
        return paths.CACHE / "sweeps" / f"{self.key()}.jsonl"

    def points(self) -> list[tuple[str, str, float, int]]:
        """Every point ``(workload, nonideality, value, rep)`` in run order.

        Per workload: the standard model (``"standard"``, value 1) for every repetition, then
        each nonideality's non-standard grid values.
        """
        out = []
        for workload in self.workloads:
            out += [(workload, STANDARD, 1.0, rep) for rep in range(self.n_reps)]
            for name, values in self.grids.items():
                item = NONIDEALITIES[name]
                for value in values:
                    if not item.is_standard(value):
                        out += [(workload, name, value, rep) for rep in range(self.n_reps)]
        return out


def point_key(workload: str, nonideality: str, value: float, rep: int) -> tuple[str, str, str, int]:
    """Identity of a point in a sweep file (the value as its exact ``repr``)."""
    return (workload, nonideality, repr(float(value)), int(rep))


def point_seed(seed: int, workload: str, rep: int) -> int:
    """Seed of the programming, drift and forward noise of repetition ``rep`` of a workload.

    Common to every nonideality and grid value (common random numbers): within a repetition,
    each point draws the same standard-normal numbers and the knob only scales them, so a
    curve's steps show the knob's effect and not a fresh noise draw. The spread over
    repetitions is the programming-to-programming variation.
    """
    return derive_seed(seed, "sweep", workload, rep)


class SweepFile(JsonlStore):
    """The results file of a sweep: a :class:`~analoglib.cache.JsonlStore` keyed by point.

    Args:
        path: The ``.jsonl`` file (created with its parent folder if missing).
        parameters: The spec's parameters, stored in (or checked against) the header.

    Raises:
        ValueError: If the file holds another spec's results or a corrupt line.
    """

    def __init__(self, path: Path, parameters: dict[str, Any]) -> None:
        super().__init__(
            path,
            parameters,
            key=_record_key,
            columns=_RECORD_COLUMNS,
            sort_by=["workload", "nonideality", "scale", "rep"],
            what="sweep",
        )


def _record_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    return point_key(record["workload"], record["nonideality"], record["scale"], record["rep"])


_RECORD_COLUMNS = (
    "workload",
    "nonideality",
    "scale",
    "rep",
    "seed",
    "t_inference_s",
    "mvm_error",
    "metric_name",
    "metric",
    "error",
    "error_fp",
    "a_star",
)


# -- the runner ---------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """A workload ready for sweep points: the calibrated analog model and the FP error."""

    workload: Any
    model: nn.Module
    error_fp: float


def prepare_workload(spec: SweepSpec, name: str, progress: bool = True) -> _Prepared:
    """Load a workload, its cached FP model and FP error; convert and calibrate it.

    The FP model is converted under the standard model and its input ranges are calibrated
    post-training on the first ``spec.calibration_batches`` training batches (exact forward,
    so independent of the nonideality settings). Every sweep point of the workload reuses this
    model through :func:`~analoglib.nn.convert.replace_config`.

    A workload whose FP model is trained here is built a second time before calibration, so
    that the calibration batches (from the seeded training loader) are the same as in a run
    that finds the checkpoint cached.
    """
    overrides = dict(spec.workload_overrides.get(name, {}))

    def load() -> Any:
        return load_workload(name, spec.profile, spec.data_source, spec.fp_seed, **overrides)

    workload = load()
    trained_here = not cache_path(workload).exists()
    train_fp(workload, progress=progress)
    if trained_here:
        workload = load()
        train_fp(workload, progress=progress)
    fp_metrics = cached_metrics(workload)
    if fp_metrics is None:
        with torch.no_grad():
            fp_metrics = workload.evaluate(workload.model.to(spec.device).eval())
    fp_model = workload.model.to(spec.device)
    # Embeddings stay digital by design, as in the papers (docs/model.md#recipe-resnet-lstm).
    model = convert_to_analog(
        fp_model, standard_hwa_2023(), seed=spec.fp_seed, on_unsupported="ignore"
    )

    def run_batch(model: nn.Module, batch: Any) -> Any:
        return workload.batch_loss(model, batch)

    calibrate_input_ranges(
        model,
        workload.train_loader,
        percentile=spec.calibration_percentile,
        max_samples=spec.calibration_samples,
        max_batches=spec.calibration_batches,
        run_batch=run_batch,
        seed=derive_seed(spec.fp_seed, "sweep_calibration"),
    )
    return _Prepared(workload, model.eval(), float(fp_metrics["error"]))


def evaluate_point(
    prepared: _Prepared, config: PCMConfig, t_inference_s: float, seed: int
) -> dict[str, float]:
    """Program, drift and evaluate the prepared model under ``config``; returns the metrics."""
    model = replace_config(prepared.model, config)
    program(model, derive_seed(seed, "program"))
    drift(model, t_inference_s, derive_seed(seed, "drift"))
    set_forward_seed(model, derive_seed(seed, "forward"))
    with torch.no_grad():
        return prepared.workload.evaluate(model)


class _PointRunner:
    """Computes sweep points of one spec, keeping what the points share in memory.

    The prepared (converted and calibrated) workload is reused by every point of that workload
    and dropped when the next workload starts; the random-tile MVM error of a config is
    computed once per ``(nonideality, value, rep)``.
    """

    def __init__(self, spec: SweepSpec, progress: bool = False) -> None:
        self.spec = spec
        self.progress = progress
        self.prepared: _Prepared | None = None
        self.mvm_errors: dict[tuple[str, str, int], float] = {}

    def __call__(self, point: tuple[str, str, float, int]) -> dict[str, Any]:
        workload, nonideality, value, rep = point
        spec = self.spec
        if self.prepared is None or self.prepared.workload.name != workload:
            self.prepared = None  # free the previous workload first
            self.prepared = prepare_workload(spec, workload, progress=self.progress)
        prepared = self.prepared
        config = config_of(nonideality, value)
        mvm_key = (nonideality, repr(float(value)), rep)
        if mvm_key not in self.mvm_errors:
            self.mvm_errors[mvm_key] = random_tile_mvm_error(
                config,
                t_inference_s=spec.t_inference_s,
                seed=derive_seed(spec.seed, "sweep_mvm_error", rep),
                size=spec.mvm_size,
                n_vectors=spec.mvm_vectors,
            )
        seed = point_seed(spec.seed, workload, rep)
        metrics = evaluate_point(prepared, config, spec.t_inference_s, seed)
        w = prepared.workload
        return {
            "workload": workload,
            "nonideality": nonideality,
            "scale": float(value),
            "rep": rep,
            "seed": seed,
            "t_inference_s": float(spec.t_inference_s),
            "mvm_error": self.mvm_errors[mvm_key],
            "metric_name": w.metric,
            "metric": float(metrics[w.metric]),
            "error": float(metrics["error"]),
            "error_fp": prepared.error_fp,
            "a_star": w.normalized_accuracy(float(metrics["error"]), prepared.error_fp),
        }


#: Point runner of each spec in a worker process (one per spec key), reused across tasks.
_WORKER_RUNNERS: dict[str, _PointRunner] = {}


def compute_point(spec: SweepSpec, point: tuple[str, str, float, int]) -> dict[str, Any]:
    """The record of one sweep point, computed wherever this runs (a worker process).

    Module-level, so executors can pickle it (``functools.partial(compute_point, spec)``).
    Within one process the prepared workload and the MVM errors are shared between the
    points of a spec. The FP checkpoints must exist already (:func:`run_sweep` trains them
    before it hands points out), so that workers only load them.

    Args:
        spec: The sweep.
        point: ``(workload, nonideality, value, rep)``.

    Returns:
        The record :func:`run_sweep` stores for the point.
    """
    key = spec.key()
    if key not in _WORKER_RUNNERS:
        _WORKER_RUNNERS.clear()  # one spec at a time per worker
        _WORKER_RUNNERS[key] = _PointRunner(spec)
    return _WORKER_RUNNERS[key](point)


def ensure_fp_checkpoints(spec: SweepSpec, names: Sequence[str], progress: bool = True) -> None:
    """Train (once, here) the FP models of ``names`` that are not cached yet.

    Workers then only load checkpoints: no two of them train the same model at once.
    """
    for name in names:
        overrides = dict(spec.workload_overrides.get(name, {}))
        workload = load_workload(name, spec.profile, spec.data_source, spec.fp_seed, **overrides)
        if not cache_path(workload).exists():
            train_fp(workload, progress=progress)


def run_sweep(
    spec: SweepSpec,
    path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    max_points: int | None = None,
    executor: Any = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Run (or resume) a sweep; every finished point is on disk as soon as it is finished.

    For each point ``(workload, nonideality, value, rep)`` of :meth:`SweepSpec.points` not yet
    in the file: the MVM error of a random tile under the point's config at
    ``spec.t_inference_s`` (:func:`~analoglib.metrics.random_tile_mvm_error`, seeded by
    ``(seed, rep)``), and the workload's metric after programming and drifting its calibrated
    analog model to ``spec.t_inference_s`` (seeded by the whole point), with A* against the FP
    error. Workloads whose points are all finished are not even loaded.

    The points are independent, so they may be spread over processes or machines
    (``executor``): the FP checkpoints are trained here first, then each worker prepares a
    workload once and computes its share of points; every record comes back to this process
    and is appended to the file as it arrives. An interrupted run, or one whose worker died,
    loses only unfinished points; the table does not depend on where or in which order the
    points ran (same ``threads``).

    Args:
        spec: The sweep.
        path: The results file; default :meth:`SweepSpec.default_path`.
        progress: Show a progress bar (also off with ``ANALOGLIB_PROGRESS=0``).
        max_points: Stop after computing this many new points (None: all); the rest is left
            for a later call.
        executor: None (this process, in order), a ``concurrent.futures.Executor`` or a Dask
            ``distributed.Client`` (see :func:`analoglib.parallel.connect`). Workers must
            see the same ``data/cache/`` (one machine, or a shared file system).
        threads: Torch threads per point in every back end (None: each process's default).

    Returns:
        The table of every finished point (see :meth:`SweepFile.table`).

    Raises:
        ValueError: If the file holds results of other parameters.
        analoglib.parallel.PointError: If a point failed (finished points are kept).
    """
    file = SweepFile(Path(path) if path is not None else spec.default_path(), spec.parameters())
    todo = [p for p in spec.points() if point_key(*p) not in file]
    if max_points is not None:
        todo = todo[: check_int("max_points", max_points, 0)]
    if executor is None:
        func: Any = _PointRunner(spec, progress=progress)
    else:
        ensure_fp_checkpoints(spec, list(dict.fromkeys(p[0] for p in todo)), progress)
        func = functools.partial(compute_point, spec)
    run_points(
        func,
        todo,
        lambda _point, record: file.append(record),
        executor,
        threads=threads,
        progress=progress,
        desc="sweep",
    )
    return file.table()
