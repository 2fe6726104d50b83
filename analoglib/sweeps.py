"""Nonideality sensitivity sweeps: which nonidealities of the standard model hurt most.

The study of Rasch et al. 2023 (Figs. 4 and 5): each nonideality of the standard AIMC crossbar
model is scaled on its own, relative to its standard value, while every other one stays at
standard. Each setting is characterised by the MVM error of a random tile and by the
normalised accuracy A* of each workload at t = 1 h after programming.

Pieces:

* :data:`NONIDEALITIES`, the registry: each :class:`Nonideality` knows its standard value, how
  a grid value maps into a :class:`~analoglib.config.PCMConfig`, its kind (``"factor"``
  relative to the standard value, ``"bits"`` of a converter, or ``"absolute"`` for knobs whose
  standard value is 0), the direction in which it raises the MVM error, and a label.
* :class:`SweepSpec` and :func:`run_sweep`, the resumable runner: one JSON line per finished
  point, appended and flushed to ``data/cache/sweeps/<hash of the spec>.jsonl``; a rerun
  skips finished points, tolerates a torn last line and refuses a file of another spec.
* :func:`summarize`, :func:`tolerance_table`, :func:`a_star_at_mvm_error` and
  :func:`check_findings`, the analysis of the finished table.

Every point is seeded independently from ``(seed, workload, nonideality, value, rep)`` with
:func:`~analoglib.utils.derive_seed`, so a resumed run gives the same table as an
uninterrupted one. The MVM error of a point is a property of its config alone; it uses the
same random tile, inputs and noise streams for every config (seed from ``(seed, rep)``), so
the MVM-error curves are smooth in the scale (common random numbers).

The standard model is evaluated once per workload and repetition (the pseudo-nonideality
``"standard"``) and stands for the standard point of every nonideality's curve.

References:
    Rasch et al. 2023 (sensitivity study, tolerance factors, equal-MVM-error comparison);
    ``aimc-model.md`` sections 3, 12 and 13.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from analoglib.config import PCMConfig, bits_to_res
from analoglib.inference import drift, program, set_forward_seed
from analoglib.metrics import random_tile_mvm_error
from analoglib.nn.convert import convert_to_analog, replace_config
from analoglib.presets import standard_hwa_2023
from analoglib.utils import PROFILES, derive_seed, paths, progress_enabled

__all__ = [
    "KINDS",
    "NONIDEALITIES",
    "STANDARD",
    "Nonideality",
    "SweepFile",
    "SweepSpec",
    "a_star_at_mvm_error",
    "baseline",
    "check_findings",
    "default_grids",
    "expand_standard",
    "get_nonideality",
    "describe_findings",
    "interpolate_tolerance",
    "registry_table",
    "results_metrics",
    "run_sweep",
    "summarize",
    "tolerance_table",
]

log = logging.getLogger(__name__)

#: Kinds of grid: a factor on the standard value, converter bits, or an absolute value.
KINDS = ("factor", "bits", "absolute")
#: Name of the pseudo-nonideality that stands for the standard model.
STANDARD = "standard"
#: Version of the sweep file format (part of every file's parameters).
FORMAT_VERSION = 1
#: Iso-accuracy threshold on A*_1h (``aimc-model.md`` section 12).
ISO_ACCURACY = 0.99


@dataclass(frozen=True)
class Nonideality:
    """One knob of the standard model that a sweep scales.

    Attributes:
        name: Registry name (``"out_noise"``).
        label: Axis and legend label.
        kind: ``"factor"`` (grid values multiply the standard value), ``"bits"`` (grid values
            are converter bits; 8 is standard) or ``"absolute"`` (grid values are the field's
            value; used where the standard value is 0).
        group: Config group of the field (``"forward"`` or ``"noise_model"``).
        field: Config field set by the grid value.
        standard: The field's value in the standard model (for ``"bits"``: 8 bits).
        family: ``"input/output"`` (noise and distortion at the converters and periphery),
            ``"weight"`` (device-level: programming, read noise, drift, stuck devices) or
            ``"other"`` (IR drop), for the comparison at equal MVM error.
        fixed: Further fields set whenever the knob is applied (e.g. the stuck kind).
    """

    name: str
    label: str
    kind: str
    group: str
    field: str
    standard: float
    family: str
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def standard_value(self) -> float:
        """The grid value of the standard model: 1 (factor), 8 (bits) or the standard value."""
        return 1.0 if self.kind == "factor" else float(self.standard)

    @property
    def error_direction(self) -> int:
        """+1 if a larger grid value raises the MVM error, -1 if it lowers it (bits)."""
        return -1 if self.kind == "bits" else 1

    def check_value(self, value: Any) -> float:
        """Validate one grid value.

        Raises:
            ValueError: If it is not a finite number >= 0, or not an integer >= 2 for bits, or
                above 1 for a device fraction.
        """
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if not ok or not math.isfinite(float(value)) or float(value) < 0:
            raise ValueError(
                f"{self.name}: grid value {value!r} is not allowed: expected a finite number >= 0."
            )
        if self.kind == "bits" and (float(value) != int(value) or int(value) < 2):
            raise ValueError(
                f"{self.name}: grid value {value!r} is not allowed: expected a whole number of "
                "bits >= 2."
            )
        if self.field == "stuck_fraction" and float(value) > 1:
            raise ValueError(
                f"{self.name}: grid value {value!r} is not allowed: expected a device fraction "
                "in [0, 1]."
            )
        return float(value)

    def field_value(self, value: float) -> Any:
        """The config field's value for a grid value."""
        value = self.check_value(value)
        if self.kind == "bits":
            return bits_to_res(int(value))
        if self.kind == "factor":
            return self.standard * value
        return value

    def apply(self, config: PCMConfig, value: float) -> PCMConfig:
        """Set this knob of ``config`` (in place) to the grid value; returns ``config``."""
        group = getattr(config, self.group)
        for name, fixed in self.fixed.items():
            setattr(group, name, fixed)
        setattr(group, self.field, self.field_value(value))
        return config

    def config(self, value: float, base: PCMConfig | None = None) -> PCMConfig:
        """A copy of ``base`` (default: the standard model) with this knob at ``value``."""
        config = standard_hwa_2023() if base is None else base.copy()
        return self.apply(config, value)

    def is_standard(self, value: float) -> bool:
        """Whether the grid value is the standard model's setting."""
        return self.check_value(value) == self.standard_value

    def format_value(self, value: float) -> str:
        """Short text of a grid value: ``2x``, ``6 bit`` or ``0.01``."""
        if self.kind == "bits":
            return f"{int(value)} bit"
        if self.kind == "factor":
            return f"{value:.3g}x"
        return f"{value:.3g}"

    @property
    def axis_label(self) -> str:
        """X-axis label of a sweep plot."""
        if self.kind == "bits":
            return f"{self.label} (bits)"
        if self.kind == "factor":
            return f"{self.label} (x standard)"
        return f"{self.label} (absolute)"


def _nonidealities() -> dict[str, Nonideality]:
    standard = standard_hwa_2023()
    fwd, pcm = standard.forward, standard.noise_model
    items = [
        Nonideality("dac_bits", "DAC resolution", "bits", "forward", "inp_res", 8, "input/output"),
        Nonideality("adc_bits", "ADC resolution", "bits", "forward", "out_res", 8, "input/output"),
        Nonideality(
            "out_noise", "Output noise", "factor", "forward", "out_noise", fwd.out_noise,
            "input/output",
        ),
        Nonideality(
            "out_nonlinearity", "ADC S-nonlinearity", "absolute", "forward", "out_nonlinearity",
            fwd.out_nonlinearity, "input/output",
        ),
        Nonideality(
            "w_noise", "Short-term read noise", "factor", "forward", "w_noise", fwd.w_noise,
            "weight",
        ),
        Nonideality(
            "prog_noise", "Programming noise", "factor", "noise_model", "prog_noise_scale",
            pcm.prog_noise_scale, "weight",
        ),
        Nonideality(
            "drift", "Drift", "factor", "noise_model", "drift_scale", pcm.drift_scale, "weight"
        ),
        Nonideality(
            "read_noise", "1/f read noise", "factor", "noise_model", "read_noise_scale",
            pcm.read_noise_scale, "weight",
        ),
        Nonideality("ir_drop", "IR drop", "factor", "forward", "ir_drop", fwd.ir_drop, "other"),
    ]  # fmt: skip
    for kind, label in (("reset", "at 0 uS"), ("g_max", "at g_max"), ("random", "at random")):
        items.append(
            Nonideality(
                f"stuck_{kind}",
                f"Stuck devices {label}",
                "absolute",
                "noise_model",
                "stuck_fraction",
                pcm.stuck_fraction,
                "weight",
                fixed={"stuck_kind": kind},
            )
        )
    return {item.name: item for item in items}


#: The registry of sweepable nonidealities, by name.
NONIDEALITIES: dict[str, Nonideality] = _nonidealities()


def get_nonideality(name: str) -> Nonideality:
    """Registry entry by name.

    Raises:
        ValueError: If ``name`` is not registered.
    """
    if name not in NONIDEALITIES:
        raise ValueError(
            f"nonideality = {name!r} is not known: expected one of {', '.join(NONIDEALITIES)}."
        )
    return NONIDEALITIES[name]


def registry_table(names: Iterable[str] | None = None) -> pd.DataFrame:
    """What each nonideality sets: label, kind, family, config field and standard value."""
    rows = []
    for name in NONIDEALITIES if names is None else names:
        item = get_nonideality(name)
        fixed = "".join(f", {item.group}.{k} = {v!r}" for k, v in item.fixed.items())
        rows.append(
            {
                "nonideality": name,
                "label": item.label,
                "kind": item.kind,
                "family": item.family,
                "sets": f"{item.group}.{item.field}{fixed}",
                "standard value": item.standard,
                "grid value of the standard": item.standard_value,
            }
        )
    return pd.DataFrame(rows).set_index("nonideality")


# -- the spec and its file -----------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= {minimum}.")
    return int(value)


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
        _check_int("n_reps", self.n_reps, 1)
        _check_int("seed", self.seed, 0)
        _check_int("fp_seed", self.fp_seed, 0)
        _check_int("calibration_batches", self.calibration_batches, 1)
        _check_int("calibration_samples", self.calibration_samples, 1)
        _check_int("mvm_vectors", self.mvm_vectors, 1)
        _check_int("mvm_size", self.mvm_size, 1)
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


def point_seed(seed: int, workload: str, nonideality: str, value: float, rep: int) -> int:
    """Seed of one point's programming, drift and forward noise."""
    return derive_seed(seed, "sweep", workload, nonideality, repr(float(value)), rep)


class SweepFile:
    """Append-only JSON-lines file of a sweep: a header line, then one line per point.

    Opening an existing file reads its finished points; a last line without its newline
    (a write cut short by a kill) is dropped from the file, any other unreadable line raises.

    Args:
        path: The ``.jsonl`` file (created with its parent folder if missing).
        parameters: The spec's parameters, stored in (or checked against) the header.

    Raises:
        ValueError: If the file holds another spec's results or a corrupt line.
    """

    def __init__(self, path: Path, parameters: dict[str, Any]) -> None:
        self.path = Path(path)
        self.parameters = parameters
        self.records: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._read()
        else:
            self._write_line({"header": parameters}, mode="w")

    def _read(self) -> None:
        data = self.path.read_bytes()
        complete, _, torn = data.rpartition(b"\n")
        if torn:
            log.warning("%s: dropping a torn last line (%d bytes)", self.path, len(torn))
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
        lines = complete.decode().split("\n") if complete else []
        if not lines:  # only a torn header: start afresh
            self._write_line({"header": self.parameters}, mode="w")
            return
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{self.path}, line {number}: not valid JSON ({err}); the file is corrupt "
                    "beyond a torn last line. Delete it to start the sweep again."
                ) from err
            if number == 1:
                header = record.get("header") if isinstance(record, dict) else None
                if header != self.parameters:
                    raise ValueError(
                        f"{self.path} holds results of other sweep parameters "
                        f"({header!r} != {self.parameters!r}); results of different parameters "
                        "are never mixed. Use another path or delete the file."
                    )
                continue
            key = point_key(
                record["workload"], record["nonideality"], record["scale"], record["rep"]
            )
            self.records[key] = record

    def _write_line(self, record: dict[str, Any], mode: str = "a") -> None:
        with open(self.path, mode) as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def __contains__(self, key: tuple[str, str, str, int]) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished point (flushed to disk before returning)."""
        key = point_key(record["workload"], record["nonideality"], record["scale"], record["rep"])
        if key in self.records:
            raise ValueError(f"point {key} is already in {self.path}.")
        self._write_line(record)
        self.records[key] = record

    def table(self) -> pd.DataFrame:
        """The finished points as a table, sorted by workload, nonideality, scale and rep."""
        columns = list(_RECORD_COLUMNS)
        df = pd.DataFrame(list(self.records.values()), columns=columns)
        return df.sort_values(["workload", "nonideality", "scale", "rep"], ignore_index=True)


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
    from analoglib.optim import calibrate_input_ranges
    from analoglib.workloads import cache_path, cached_metrics, load_workload, train_fp

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
    model = convert_to_analog(fp_model, standard_hwa_2023(), seed=spec.fp_seed)

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


def _config_of(nonideality: str, value: float) -> PCMConfig:
    if nonideality == STANDARD:
        return standard_hwa_2023()
    return NONIDEALITIES[nonideality].config(value)


def run_sweep(
    spec: SweepSpec,
    path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    max_points: int | None = None,
) -> pd.DataFrame:
    """Run (or resume) a sweep; every finished point is on disk before the next starts.

    For each point ``(workload, nonideality, value, rep)`` of :meth:`SweepSpec.points` not yet
    in the file: the MVM error of a random tile under the point's config at
    ``spec.t_inference_s`` (:func:`~analoglib.metrics.random_tile_mvm_error`, seeded by
    ``(seed, rep)``), and the workload's metric after programming and drifting its calibrated
    analog model to ``spec.t_inference_s`` (seeded by the whole point), with A* against the FP
    error. Workloads whose points are all finished are not even loaded.

    Args:
        spec: The sweep.
        path: The results file; default :meth:`SweepSpec.default_path`.
        progress: Show a progress bar (also off with ``ANALOGLIB_PROGRESS=0``).
        max_points: Stop after computing this many new points (None: all); the rest is left
            for a later call.

    Returns:
        The table of every finished point (see :meth:`SweepFile.table`).

    Raises:
        ValueError: If the file holds results of other parameters.
    """
    file = SweepFile(Path(path) if path is not None else spec.default_path(), spec.parameters())
    todo = [p for p in spec.points() if point_key(*p) not in file]
    if max_points is not None:
        todo = todo[: _check_int("max_points", max_points, 0)]
    mvm_cache: dict[tuple[str, str, int], float] = {}
    prepared: _Prepared | None = None
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress_enabled(progress))
    try:
        for workload, nonideality, value, rep in todo:
            if prepared is None or prepared.workload.name != workload:
                prepared = None  # free the previous workload first
                prepared = prepare_workload(spec, workload, progress=progress)
            bar.set_postfix_str(f"{workload} {nonideality} {value:g} rep {rep}")
            config = _config_of(nonideality, value)
            mvm_key = (nonideality, repr(float(value)), rep)
            if mvm_key not in mvm_cache:
                mvm_cache[mvm_key] = random_tile_mvm_error(
                    config,
                    t_inference_s=spec.t_inference_s,
                    seed=derive_seed(spec.seed, "sweep_mvm_error", rep),
                    size=spec.mvm_size,
                    n_vectors=spec.mvm_vectors,
                )
            seed = point_seed(spec.seed, workload, nonideality, value, rep)
            metrics = evaluate_point(prepared, config, spec.t_inference_s, seed)
            w = prepared.workload
            file.append(
                {
                    "workload": workload,
                    "nonideality": nonideality,
                    "scale": float(value),
                    "rep": rep,
                    "seed": seed,
                    "t_inference_s": float(spec.t_inference_s),
                    "mvm_error": mvm_cache[mvm_key],
                    "metric_name": w.metric,
                    "metric": float(metrics[w.metric]),
                    "error": float(metrics["error"]),
                    "error_fp": prepared.error_fp,
                    "a_star": w.normalized_accuracy(float(metrics["error"]), prepared.error_fp),
                }
            )
            bar.update()
    finally:
        bar.close()
    return file.table()


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


def _grid_reach(item: Nonideality, values: np.ndarray, tolerance: float, censored: str) -> float:
    """Position of the tolerance in the swept range: 0 (none of it) to 1 (all of it).

    Measured in log(value) (in bits for the converters), from the most benign grid value.
    """
    if censored == "below":
        return 0.0
    if censored == "above":
        return 1.0
    if item.kind == "bits":
        lo, hi, x = values.max(), values.min(), tolerance
        return float((lo - x) / (lo - hi)) if lo != hi else 1.0
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
        :func:`interpolate_tolerance`), ``kind``, ``text`` (e.g. ``">=8x"``, ``"5 bit"``,
        ``"none"``) and ``reach`` (0-1, the tolerated part of the swept range, for colour).

    References:
        Rasch et al. 2023, Fig. 5B (tolerance factors); ``aimc-model.md`` section 13.1.
    """
    rows = []
    for (workload, name), part in summary.groupby(["workload", "nonideality"], sort=False):
        item = get_nonideality(str(name))
        values = part["scale"].to_numpy(dtype=float)
        level = threshold[str(workload)] if isinstance(threshold, Mapping) else threshold
        tolerance, censored = interpolate_tolerance(
            item, values, part["a_star_mean"].to_numpy(dtype=float), level
        )
        if censored == "below":
            text = "none"
        else:
            text = (">=" if censored == "above" else "") + item.format_value(tolerance)
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
    for (workload, name), part in summary.groupby(["workload", "nonideality"], sort=False):
        item = get_nonideality(str(name))
        values = part["scale"].to_numpy(dtype=float)
        order = _harm_order(item, values)
        eps = part["mvm_error_mean"].to_numpy(dtype=float)[order]
        a = part["a_star_mean"].to_numpy(dtype=float)[order]
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


def results_metrics(
    summary: pd.DataFrame,
    tolerances: pd.DataFrame,
    equal_error: pd.DataFrame,
    findings: dict[str, Any],
) -> dict[str, Any]:
    """Headline numbers of a sweep for the results JSON (NaN where undefined).

    Returns:
        ``scales`` and ``mvm_error`` per nonideality (grid values and mean MVM errors, which do
        not depend on the workload), and per workload: ``a_star_mean`` and ``a_star_std`` per
        nonideality (along the grid), ``tolerance``, ``a_star_at_equal_mvm_error``; plus the
        ``findings`` of :func:`check_findings`.
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
    return {
        "scales": scales,
        "mvm_error": mvm,
        "workloads": per_workload,
        "findings": {
            "io_worse_holds": findings["io_worse_holds"],
            "rnn_most_robust": findings["rnn_most_robust"],
            "robustness": findings["robustness"],
        },
    }


def default_grids(
    names: Iterable[str],
    scale_grid: Sequence[float],
    bits_grid: Sequence[int],
    absolute_grids: Mapping[str, Sequence[float]],
) -> dict[str, tuple[float, ...]]:
    """Grids per nonideality from one factor grid, one bits grid and per-knob absolute grids.

    Args:
        names: Nonidealities to sweep.
        scale_grid: Factors for every ``"factor"`` nonideality.
        bits_grid: Bits for the converters.
        absolute_grids: Grid per ``"absolute"`` nonideality, keyed by its config field
            (``"out_nonlinearity"``, ``"stuck_fraction"``) or by its name.

    Raises:
        ValueError: For an unknown name or a missing absolute grid.
    """
    grids: dict[str, tuple[float, ...]] = {}
    for name in names:
        item = get_nonideality(name)
        if item.kind == "factor":
            grids[name] = tuple(scale_grid)
        elif item.kind == "bits":
            grids[name] = tuple(float(b) for b in bits_grid)
        else:
            grid = absolute_grids.get(name, absolute_grids.get(item.field))
            if grid is None:
                raise ValueError(
                    f"no grid for {name!r}: absolute_grids needs a key {name!r} or {item.field!r}."
                )
            grids[name] = tuple(grid)
    return grids
