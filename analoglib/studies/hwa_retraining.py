"""Hardware-aware retraining per network family (Rasch et al. 2023).

Notebook: ``notebooks/02_hwa_retraining.ipynb``; paper: Rasch et al., "Hardware-aware training
for large-scale and diverse deep learning inference workloads using in-memory computing-based
accelerators", Nature Communications 14, 5282 (2023).

The study compares, per workload, the FP baseline, a direct mapping of the FP weights (with
data-calibrated input ranges) and the HWA-retrained model, each programmed ``n_reps`` times and
evaluated from 1 s to 1 year with and without global drift compensation. This module holds the
study's data (HWA recipe per workload and profile, the published numbers) and its tables; the
training itself is :func:`analoglib.workloads.train_hwa`.

References:
    Rasch et al. 2023; ``docs/model.md#hwa-training``, ``docs/model.md#metrics``,
    ``docs/published-results.md#rasch-2023``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from analoglib.cache import SIMULATION_REVISION, JsonlStore, json_normalized, key_digest
from analoglib.config import PCMConfig
from analoglib.inference import evaluate
from analoglib.optim import PostTrainingReport
from analoglib.parallel import run_points
from analoglib.plotting import subplots
from analoglib.presets import standard_hwa_2023
from analoglib.studies.common import calibration_batches, direct_mapping
from analoglib.training.hwa import HWARecipe
from analoglib.utils import check_int, paths
from analoglib.workloads import Workload, cached_metrics, load_workload, train_fp, train_hwa
from analoglib.workloads.base import resolve_parameters

__all__ = [
    "HWA_PROFILES",
    "PUBLISHED_RASCH_2023",
    "VARIANTS",
    "HWAStudySpec",
    "Variants",
    "compute_variant_point",
    "prepare_variants",
    "run_variants",
    "batchnorm_check_metrics",
    "batchnorm_drift_check",
    "batchnorm_recomputed_eval",
    "compare_with_published",
    "evaluate_variants",
    "has_batchnorm",
    "hwa_recipe",
    "normalized_accuracy_table",
    "plot_a_star",
    "published_metric",
    "results_metrics",
]


#: HWA recipe, weight noise and evaluation size of each workload and profile. ``recipe``: the
#: :class:`HWARecipe`; ``config``: config fields set on the standard preset
#: :func:`~analoglib.presets.standard_hwa_2023` (which clips at 1 and remaps channelwise):
#: PCM-like weight noise (and layer-gaussian clipping for the LSTM) as in ``docs/model.md``#: 10.2,
#: additive noise 0.06 for the transformer as in 10.4; ``eval_batches``: evaluation
#: batches per evaluation in the study (0: all); ``calibration_batches``: training batches
#: that calibrate the input ranges of the direct-mapping baseline. The default profiles are sized
#: for at most about 30 minutes per workload on two idle CPU cores with the FP checkpoint
#: cached (HWA training plus 48 evaluations at n_reps = 3): CNN 250 analog steps of batch 128
#: and 500 test images per evaluation (twice the first release of the study); LSTM 900 steps
#: and 12 test segments, MiniLM 300 steps and 256 validation sentences (1.5 times).
HWA_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cnn": {
        "smoke": {
            "recipe": {"epochs": 2, "lr": 2e-3, "max_steps": 15, "ramp_steps": 10},
            "config": {"modifier": {"type": "pcm_noise", "std_dev": 3.0}},
            "eval_batches": 0,
            "calibration_batches": 4,
        },
        "default": {
            "recipe": {
                "epochs": 2,
                "lr": 5e-4,
                "max_steps": 125,
                "lr_decay": 0.5,
                "ramp_steps": 80,
                "distill_weight": 0.5,
            },
            "config": {"modifier": {"type": "pcm_noise", "std_dev": 3.0}},
            "eval_batches": 1,
            "calibration_batches": 8,
        },
        "paper": {
            "recipe": {
                "epochs": 600,
                "lr": 7.5e-3,
                "optimizer": "sgd",
                "weight_decay": 1e-3,
                # The recipe: lr x 1/20 for epochs 0-1 (a constant warm-up), x 0.1 from epoch
                # 300, x 0.01 from 500. Batch 128: 391 steps per epoch (the recipe's 50: 1,000).
                "warmup_steps": 2 * 391,
                "warmup_factor": 1 / 20,
                "schedule": "step",
                "step_milestones": (300, 500),
                "step_gamma": 0.1,
                "ramp_steps": 20 * 391,
            },
            "config": {"modifier": {"type": "pcm_noise", "std_dev": 3.0}},
            "eval_batches": 0,
            "calibration_batches": 20,
        },
    },
    "rnn": {
        "smoke": {
            "recipe": {"epochs": 1, "lr": 5e-3, "max_steps": 6, "grad_clip": 1.0},
            "config": {
                "modifier": {"type": "pcm_noise", "std_dev": 5.0, "pdrop": 0.01},
                "clip": {"type": "layer_gaussian", "sigma": 2.5},
            },
            "eval_batches": 1,
            "calibration_batches": 4,
        },
        "default": {
            "recipe": {
                "epochs": 2,
                "lr": 0.3,
                "optimizer": "sgd",
                "max_steps": 450,
                "grad_clip": 0.25,
                "lr_decay": 0.5,
                "ramp_steps": 300,
            },
            "config": {
                "modifier": {"type": "pcm_noise", "std_dev": 5.0, "pdrop": 0.01},
                "clip": {"type": "layer_gaussian", "sigma": 2.5},
            },
            "eval_batches": 12,
            "calibration_batches": 8,
        },
        "paper": {
            "recipe": {
                "epochs": 60,
                "lr": 0.01,
                "optimizer": "sgd",
                "weight_decay": 1e-5,
                "grad_clip": 10.0,
            },
            "config": {
                "modifier": {"type": "pcm_noise", "std_dev": 5.0, "pdrop": 0.01},
                "clip": {"type": "layer_gaussian", "sigma": 2.5},
            },
            "eval_batches": 0,
            "calibration_batches": 20,
        },
    },
    "transformer": {
        "smoke": {
            "recipe": {"epochs": 1, "lr": 5e-4, "max_steps": 6, "grad_clip": 1.0},
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 1,
            "calibration_batches": 4,
        },
        "default": {
            "recipe": {
                "epochs": 1,
                "lr": 2e-5,
                "max_steps": 300,
                "grad_clip": 1.0,
                "ramp_steps": 90,
                "distill_weight": 0.5,
            },
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 4,
            "calibration_batches": 8,
        },
        "paper": {
            # Lammie 2024: AdamW, lr 5e-5, 20 epochs; the schedule it leaves open is RoBERTa's
            # fine-tuning one: linear warm-up over 6 % of the 2,300 steps (MRPC, batch 32: 115
            # per epoch), then linear decay to 0 (docs/model.md#recipe-choices).
            "recipe": {
                "epochs": 20,
                "lr": 5e-5,
                "optimizer": "adamw",
                "grad_clip": 1.0,
                "schedule": "linear",
                "warmup_steps": 138,
            },
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 0,
            "calibration_batches": 20,
        },
    },
}


def hwa_recipe(
    workload: str, profile: str, **overrides: Any
) -> tuple[HWARecipe, PCMConfig, dict[str, int]]:
    """The HWA recipe and training config of a workload and profile (:data:`HWA_PROFILES`).

    Args:
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"``.
        profile: ``"smoke"``, ``"default"`` or ``"paper"``.
        **overrides: :class:`HWARecipe` fields to change.

    Returns:
        ``(recipe, config, sizes)``: the config is the standard preset with the profile's
        modifier (and clip) fields; ``sizes`` holds ``eval_batches`` and
        ``calibration_batches``.

    Raises:
        ValueError: For an unknown workload, profile or recipe field.
    """
    if workload not in HWA_PROFILES:
        raise ValueError(
            f"workload = {workload!r} is not allowed: expected one of "
            f"{', '.join(map(repr, HWA_PROFILES))}."
        )
    profiles = HWA_PROFILES[workload]
    if profile not in profiles:
        raise ValueError(
            f"profile = {profile!r} is not allowed: expected one of "
            f"{', '.join(map(repr, profiles))}."
        )
    entry = profiles[profile]
    fields = {f.name for f in dataclasses.fields(HWARecipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"HWARecipe has no field {', '.join(map(repr, unknown))}; its fields are: "
            f"{', '.join(sorted(fields))}."
        )
    recipe = HWARecipe(**{**entry["recipe"], **overrides})
    config = standard_hwa_2023()
    for group, values in entry["config"].items():
        for name, value in values.items():
            setattr(getattr(config, group), name, value)
    sizes = {k: int(entry[k]) for k in ("eval_batches", "calibration_batches")}
    return recipe, config, sizes


#: Published A* of Rasch et al. 2023 (and the follow-up Wu 2026 for ResNet-32) per family, in
#: percent (``docs/published-results.md#rasch-2023``); None where no number is published.
PUBLISHED_RASCH_2023: dict[str, dict[str, Any]] = {
    "cnn": {
        "model": "ResNet-32 / CIFAR-10 (Wu 2026: FP 94.1 % -> HWA 93.3 %)",
        "a_star_1h": 99.0,
        "a_star_1y": 97.0,
    },
    "rnn": {
        "model": "2-layer LSTM / PTB (A*_1h 99.6-99.7 %)",
        "a_star_1h": 99.6,
        "a_star_1y": 99.1,
    },
    "transformer": {"model": "BERT-base / GLUE", "a_star_1h": 99.8, "a_star_1y": None},
}


def normalized_accuracy_table(
    results: pd.DataFrame,
    error_fp: float,
    chance_error: float,
    times_s: Sequence[float] = (3600.0, 31536000.0),
    variant: str = "variant",
) -> pd.DataFrame:
    """A* (%) per variant, drift compensation and time: mean and std over repetitions.

    A*_t = 1 - (error_t - error_FP) / (error_chance - error_FP) of every repetition
    (``docs/model.md#metrics``), then mean and sample std.

    Args:
        results: Tidy table of :func:`analoglib.evaluate` with an ``error`` column and a
            ``variant`` column.
        error_fp: Error of the FP model.
        chance_error: Error at chance level.
        times_s: Times (s) to keep.
        variant: Name of the variant column.

    Returns:
        Rows (variant, drift_compensation, t_inference_s) with columns ``a_star_mean`` and
        ``a_star_std`` (percent).

    Raises:
        ValueError: If a column is missing or ``chance_error == error_fp``.
    """
    missing = [
        c for c in ("error", "t_inference_s", "drift_compensation", variant) if c not in results
    ]
    if missing:
        raise ValueError(f"results lacks the column(s) {', '.join(missing)}.")
    if chance_error == error_fp:
        raise ValueError(f"chance_error = {chance_error!r} equals error_fp: A* is undefined.")
    rows = results[results["t_inference_s"].isin([float(t) for t in times_s])].copy()
    rows["a_star"] = 100.0 * (1.0 - (rows["error"] - error_fp) / (chance_error - error_fp))
    table = rows.groupby([variant, "drift_compensation", "t_inference_s"], sort=False)["a_star"]
    return table.agg(a_star_mean="mean", a_star_std="std")


def evaluate_variants(
    models: dict[str, nn.Module],
    eval_fn: Callable[[nn.Module], Any],
    t_inferences: Sequence[float],
    n_reps: int,
    seed: int,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`analoglib.evaluate` of several analog models, with and without drift compensation.

    Every model is programmed ``n_reps`` times (seeds ``seed + r``, the same for every model)
    and evaluated at each time, once with global drift compensation and once without.

    Args:
        models: Variant name -> converted model.
        eval_fn: Metric function (e.g. ``workload.evaluate``).
        t_inferences: Times after programming (s).
        n_reps: Programming repetitions.
        seed: Base seed.
        progress: Show progress bars.

    Returns:
        The tidy tables concatenated, with a ``variant`` column.
    """
    tables = []
    for name, model in models.items():
        for gdc in (True, False):
            table = evaluate(
                model,
                eval_fn,
                t_inferences,
                n_reps,
                seed,
                drift_compensation=gdc,
                progress=progress,
            )
            tables.append(table.assign(variant=name))
    return pd.concat(tables, ignore_index=True)


def compare_with_published(a_star: pd.DataFrame, workload: str, description: str) -> pd.DataFrame:
    """A*_1h and A*_1y (with drift compensation) of each variant beside the published values.

    Args:
        a_star: Output of :func:`normalized_accuracy_table` (times 3600 s and 31536000 s).
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"`` (the family's published row).
        description: What our run is (the offline stand-in), for the ``model`` column.

    Returns:
        One row per variant (ours, ``mean +- std`` in %) and one for the published HWA result.

    References:
        ``docs/published-results.md#rasch-2023``.
    """
    published = PUBLISHED_RASCH_2023[workload]
    rows = []
    with_gdc = a_star.xs(True, level="drift_compensation")
    for name in pd.unique(with_gdc.index.get_level_values(0)):
        row: dict[str, Any] = {"variant": str(name), "model": description}
        for label, t in (("A*_1h (%)", 3600.0), ("A*_1y (%)", 31536000.0)):
            if (name, t) in with_gdc.index:
                mean, std = with_gdc.loc[(name, t), ["a_star_mean", "a_star_std"]]
                row[label] = f"{mean:.1f} +- {0.0 if pd.isna(std) else std:.1f}"
            else:
                row[label] = "-"
        rows.append(row)

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows.append(
        {
            "variant": "HWA, published (Rasch et al. 2023)",
            "model": published["model"],
            "A*_1h (%)": fmt(published["a_star_1h"]),
            "A*_1y (%)": fmt(published["a_star_1y"]),
        }
    )
    return pd.DataFrame(rows).set_index("variant")


def results_metrics(results: pd.DataFrame, a_star: pd.DataFrame, metric: str) -> dict[str, Any]:
    """Headline numbers of an HWA study for the results JSON.

    Args:
        results: Output of :func:`evaluate_variants`.
        a_star: Output of :func:`normalized_accuracy_table`.
        metric: The task metric column.

    Returns:
        ``t_inference_s`` and, per variant and drift compensation (keys like
        ``hwa_gdc``, ``direct_mapping_no_gdc``), the mean and std of ``metric`` at each time
        and the mean A* (%) at the times of ``a_star`` (``a_star_3600`` ...).
    """
    out: dict[str, Any] = {"t_inference_s": sorted(results["t_inference_s"].unique().tolist())}
    stats = results.groupby(["variant", "drift_compensation", "t_inference_s"], sort=False)
    table = stats[metric].agg(["mean", "std"]).sort_index()
    for (name, gdc), part in table.groupby(level=[0, 1], sort=False):
        key = "_".join(str(name).lower().replace("-", " ").split()) + ("_gdc" if gdc else "_no_gdc")
        entry: dict[str, Any] = {
            "mean": part["mean"].tolist(),
            "std": part["std"].fillna(0.0).tolist(),
        }
        if (name, gdc) in a_star.droplevel(2).index:
            for t, value in a_star.loc[(name, gdc), "a_star_mean"].items():
                entry[f"a_star_{int(t)}"] = float(value)
        out[key] = entry
    return out


# -- the study runner: every (variant, drift compensation, repetition) is one point -------------
#: The analog variants of the study, in table order.
VARIANTS = ("direct mapping", "HWA")


@dataclass(frozen=True)
class HWAStudySpec:
    """Everything that determines the evaluation table of one workload (and names its file).

    Attributes:
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"``.
        workload_profile: Profile of the workload and of its HWA recipe (:data:`HWA_PROFILES`).
        data_source: ``"offline"`` or ``"hub"``.
        seed: Seed of the workload, its training and the repetitions (rep r: ``seed + r``).
        eval_batches: Evaluation batches per evaluation (0: all; -1: the recipe's value).
        calibration_batches: Training batches that calibrate the direct mapping's input ranges
            (-1: the recipe's value).
        t_inferences: Times after programming (s).
        n_reps: Programming repetitions per variant, time and drift-compensation setting.
        device: ``"cpu"`` or ``"cuda"``, where the models are evaluated.
    """

    workload: str
    workload_profile: str = "default"
    data_source: str = "offline"
    seed: int = 0
    eval_batches: int = -1
    calibration_batches: int = -1
    t_inferences: tuple[float, ...] = (1.0, 3600.0, 86400.0, 31536000.0)
    n_reps: int = 3
    device: str = "cpu"

    def __post_init__(self) -> None:
        _, _, sizes = hwa_recipe(self.workload, self.workload_profile)  # checks both names
        if self.data_source not in ("offline", "hub"):
            raise ValueError(
                f"data_source = {self.data_source!r} is not allowed: expected 'offline' or 'hub'."
            )
        check_int("seed", self.seed, 0)
        check_int("n_reps", self.n_reps, 1)
        for name, default in (("eval_batches", "eval_batches"), ("calibration_batches", None)):
            value = check_int(name, getattr(self, name), -1)
            if value < 0:
                value = sizes[default or name]
            object.__setattr__(self, name, value)
        if self.calibration_batches < 1:
            raise ValueError(
                f"calibration_batches = {self.calibration_batches!r} is not allowed: expected "
                "an integer >= 1 (or -1 for the recipe's value)."
            )
        times = tuple(self.t_inferences)
        if not times or any(
            not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0 for t in times
        ):
            raise ValueError(
                f"t_inferences = {self.t_inferences!r} is not allowed: expected a non-empty "
                "list of finite times >= 0 s."
            )
        object.__setattr__(self, "t_inferences", times)
        if self.device not in ("cpu", "cuda"):
            raise ValueError(
                f"device = {self.device!r} is not allowed: expected 'cpu' or 'cuda' (resolve "
                "'auto' with analoglib.get_device first)."
            )

    def parameters(self) -> dict[str, Any]:
        """Plain JSON-able dict of the spec and the simulation revision (the file's header).

        It holds what the evaluated models depend on, so that stored evaluations are never
        reused for other models: the workload's profile parameters (which fix the FP model),
        the HWA recipe and the HWA training config.
        """
        recipe, config, _ = hwa_recipe(self.workload, self.workload_profile)
        workload = resolve_parameters(
            self.workload, self.workload_profile, self.data_source, self.seed, {}
        )
        return json_normalized(
            {
                **dataclasses.asdict(self),
                "simulation": SIMULATION_REVISION,
                "workload_parameters": workload,
                "hwa_recipe": dataclasses.asdict(recipe),
                "hwa_config": config.to_dict(),
            }
        )

    def key(self) -> str:
        """16-hex-digit hash of :meth:`parameters` (names the file)."""
        return key_digest(self.parameters())

    def default_path(self) -> Path:
        """``data/cache/hwa_study/<workload>/<key>.jsonl``."""
        return paths.CACHE / "hwa_study" / self.workload / f"{self.key()}.jsonl"

    def points(self) -> list[tuple[str, bool, int]]:
        """Every point ``(variant, drift_compensation, rep)`` in table order."""
        return [
            (variant, gdc, rep)
            for variant in VARIANTS
            for gdc in (True, False)
            for rep in range(self.n_reps)
        ]


@dataclass
class Variants:
    """The workload of a study, its FP baseline and the two analog variants, ready to evaluate.

    Attributes:
        workload: The workload (evaluation subset of the spec).
        fp_model: The trained FP model.
        fp_metrics: Its metrics on the evaluation subset.
        models: Variant name -> converted model (``"direct mapping"``, ``"HWA"``).
        calibration: Report of the direct mapping's input-range calibration.
        recipe: The HWA recipe.
        config: The HWA training config.
    """

    workload: Workload
    fp_model: nn.Module
    fp_metrics: dict[str, float]
    models: dict[str, nn.Module]
    calibration: PostTrainingReport
    recipe: HWARecipe
    config: PCMConfig


def prepare_variants(spec: HWAStudySpec, retrain: bool = False, progress: bool = True) -> Variants:
    """Train (or load from ``data/cache/``) the FP and HWA models and build both variants.

    The FP model is cached by :func:`analoglib.workloads.train_fp`, the HWA model by
    :func:`analoglib.workloads.train_hwa`; the direct mapping is the FP model on the standard
    preset with its input ranges calibrated on the first ``spec.calibration_batches``
    training batches in dataset order (:func:`~analoglib.studies.common.direct_mapping`), so
    it does not depend on whether the FP model was just trained or loaded.

    Args:
        spec: The study of one workload.
        retrain: Train the FP and HWA models again instead of loading them.
        progress: Show progress bars.

    Returns:
        The :class:`Variants`.
    """
    recipe, config, _ = hwa_recipe(spec.workload, spec.workload_profile)
    workload = load_workload(
        spec.workload,
        spec.workload_profile,
        spec.data_source,
        spec.seed,
        max_eval_batches=spec.eval_batches,
    )
    workload.model.to(spec.device)
    fp_model = train_fp(workload, retrain=retrain, progress=progress)
    fp_metrics = cached_metrics(workload)
    if fp_metrics is None:
        with torch.no_grad():
            fp_metrics = workload.evaluate(fp_model)
    direct, calibration = direct_mapping(workload, fp_model, spec.calibration_batches, spec.seed)
    hwa_model = train_hwa(workload, config, recipe, retrain=retrain, progress=progress)
    return Variants(
        workload=workload,
        fp_model=fp_model,
        fp_metrics=dict(fp_metrics),
        models={"direct mapping": direct, "HWA": hwa_model},
        calibration=calibration,
        recipe=recipe,
        config=config,
    )


def _evaluate_point(
    variants: Variants, spec: HWAStudySpec, point: tuple[str, bool, int]
) -> dict[str, Any]:
    """The evaluation rows of one (variant, drift compensation, repetition)."""
    variant, gdc, rep = point
    table = evaluate(
        variants.models[variant],
        variants.workload.evaluate,
        spec.t_inferences,
        1,
        spec.seed + rep,  # repetition r of evaluate(n_reps, seed): programmed with seed + r
        drift_compensation=gdc,
        progress=False,
    )
    table = table.assign(rep=rep, variant=variant)
    return {
        "variant": variant,
        "drift_compensation": gdc,
        "rep": rep,
        "columns": list(table.columns),
        "rows": table.to_dict("records"),
    }


#: Prepared variants of the spec a worker process is running (one spec at a time).
_WORKER_VARIANTS: dict[str, Variants] = {}


def compute_variant_point(spec: HWAStudySpec, point: tuple[str, bool, int]) -> dict[str, Any]:
    """One point of :func:`run_variants`, computed wherever this runs (a worker process).

    The worker builds the variants once per spec from the cached checkpoints
    (:func:`prepare_variants`; :func:`run_variants` trains them first) and reuses them.
    """
    key = spec.key()
    if key not in _WORKER_VARIANTS:
        _WORKER_VARIANTS.clear()
        _WORKER_VARIANTS[key] = prepare_variants(spec, progress=False)
    return _evaluate_point(_WORKER_VARIANTS[key], spec, point)


def _point_key(record: dict[str, Any]) -> tuple[str, bool, int]:
    return (record["variant"], bool(record["drift_compensation"]), int(record["rep"]))


def run_variants(
    spec: HWAStudySpec,
    variants: Variants | None = None,
    *,
    executor: Any = None,
    threads: int | None = None,
    retrain: bool = False,
    path: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate both analog variants from 1 s to 1 year, with and without drift compensation.

    Every variant is programmed ``spec.n_reps`` times (seeds ``seed + r``, the same for both)
    and evaluated at each time, once with global drift compensation and once without; each
    ``(variant, drift compensation, repetition)`` is a point, stored in a resumable
    JSON-lines file (:meth:`HWAStudySpec.default_path`) as soon as it is finished. The table
    equals :func:`evaluate_variants` of the two models.

    Args:
        spec: The study of one workload.
        variants: The prepared variants (:func:`prepare_variants`); None prepares them here.
            Evaluated here when ``executor`` is None.
        executor: None (this process), a ``concurrent.futures.Executor`` or a Dask
            ``distributed.Client``: the workers rebuild the variants from the cached
            checkpoints (they must see the same ``data/cache/``).
        threads: Torch threads per point in every back end (None: each process's default).
        retrain: Delete the stored evaluations first and evaluate every point again (the
            checkpoints are retrained by :func:`prepare_variants`, not here).
        path: The results file (default :meth:`HWAStudySpec.default_path`).
        progress: Show progress bars.

    Returns:
        The tidy table of :func:`analoglib.evaluate` rows with a ``variant`` column.

    Raises:
        analoglib.parallel.PointError: If a point failed (finished points are kept).
    """
    path = Path(path) if path is not None else spec.default_path()
    if retrain:
        path.unlink(missing_ok=True)
    store = JsonlStore(path, spec.parameters(), key=_point_key, what="HWA study")
    todo = [p for p in spec.points() if p not in store]
    if todo:
        if variants is None:
            # Here for the in-process run; for workers, so that they only load checkpoints.
            variants = prepare_variants(spec, progress=progress)
        func: Any = functools.partial(_evaluate_point, variants, spec)
        if executor is not None:
            func = functools.partial(compute_variant_point, spec)
        run_points(
            func,
            todo,
            lambda _point, record: store.append(record),
            executor,
            threads=threads,
            progress=progress,
            desc=f"evaluate {spec.workload}",
        )
    records = [store.records[point] for point in spec.points()]
    rows = [row for record in records for row in record["rows"]]
    return pd.DataFrame(rows, columns=records[0]["columns"])


# -- what the published A* means on our scale, and the A* figure --------------------------------
def published_metric(
    workload: str, metric: str, fp_metrics: Mapping[str, float], chance_error: float
) -> dict[float, float]:
    """The published HWA A* of ``workload`` (with GDC) as a value of our task metric.

    A* = 1 - (error - error_FP)/(error_chance - error_FP) inverted with our FP and chance
    errors gives the error our model would have at the published A*; that is a value of the
    task metric only when the metric is ``1 - error`` (an accuracy). For other metrics (the
    LSTM's perplexity) there is nothing to draw: the A* figure carries the comparison.

    Args:
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"`` (the published row).
        metric: Key of the task metric in ``fp_metrics``.
        fp_metrics: Our FP model's metrics, with ``metric`` and ``"error"``.
        chance_error: Error at chance level.

    Returns:
        Time (s) -> metric value for the published times (empty for a non-accuracy metric).
    """
    error_fp = float(fp_metrics["error"])
    if not math.isclose(float(fp_metrics[metric]), 1.0 - error_fp):
        return {}
    published = PUBLISHED_RASCH_2023[workload]
    out = {}
    for key, t in (("a_star_1h", 3600.0), ("a_star_1y", 31536000.0)):
        if published[key] is not None:
            error = error_fp + (1.0 - published[key] / 100.0) * (chance_error - error_fp)
            out[t] = 1.0 - error
    return out


def plot_a_star(a_star: pd.DataFrame, workload: str, title: str, n_reps: int) -> plt.Figure:
    """A*_1h and A*_1y with drift compensation per variant (mean +- std) beside the paper.

    A dot plot, not bars: A* of the variants differs by points near 100 %, and a bar from 0
    (chance) would hide that, a bar from elsewhere would exaggerate it.

    Args:
        a_star: :func:`normalized_accuracy_table` at 3600 s and 31536000 s.
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"`` (the published row).
        title: Figure title (name the workload and data).
        n_reps: Programmings behind each mean (for the legend).

    Returns:
        The single-column figure.
    """
    with_gdc = a_star.xs(True, level="drift_compensation")
    times = (3600.0, 31536000.0)
    fig, ax = subplots(height_in=3.6)
    variants = list(pd.unique(with_gdc.index.get_level_values(0)))
    offsets = np.linspace(-0.12, 0.12, len(variants) + 1)
    for offset, name in zip(offsets, variants, strict=False):
        xs, means, stds = [], [], []
        for i, t in enumerate(times):
            if (name, t) in with_gdc.index:
                xs.append(i + offset)
                means.append(with_gdc.loc[(name, t), "a_star_mean"])
                stds.append(with_gdc.loc[(name, t), "a_star_std"])
        ax.errorbar(
            xs,
            means,
            yerr=np.nan_to_num(np.asarray(stds, dtype=float)),
            marker="o",
            linestyle="none",
            capsize=3,
            label=f"{name} (ours, ±1 std over {n_reps} programmings)",
        )
    published = PUBLISHED_RASCH_2023[workload]
    pub = [
        (i + offsets[-1], published[key])
        for i, key in enumerate(("a_star_1h", "a_star_1y"))
        if published[key] is not None
    ]
    if pub:
        ax.plot(
            [x for x, _ in pub],
            [y for _, y in pub],
            marker="*",
            markersize=10,
            linestyle="none",
            color="black",
            label=f"HWA, published: {published['model']}",
        )
    ax.axhline(99.0, color="0.5", linestyle=":", linewidth=0.9, label="iso-accuracy, A* = 99 %")
    ax.set_xticks(range(len(times)), ["1 h", "1 y"])
    ax.set_xlim(-0.5, len(times) - 0.5)
    ax.set_xlabel("Time after programming (with GDC)")
    ax.set_ylabel("Normalised accuracy A* (%)")
    ax.set_title(textwrap.fill(title, 60), fontsize="small")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22))
    return fig


# -- why a BatchNorm network collapses without drift compensation -------------------------------
def _batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batchnorm_recomputed_eval(
    eval_fn: Callable[[nn.Module], dict[str, float]], batches: Sequence[Any]
) -> Callable[[nn.Module], dict[str, float]]:
    """``eval_fn`` on a copy of the model whose BatchNorm statistics are recomputed first.

    The copy keeps the programmed, drifted analog weights; every BatchNorm layer forgets its
    running mean and variance and re-estimates them (cumulative average) on ``batches`` in
    train mode, then the copy is evaluated. Before that, on the first batch, it measures how
    large each BatchNorm layer's inputs are against the statistics it was trained with.

    Returns:
        An evaluation function whose dict adds ``bn_input_std_ratio``: the median over
        BatchNorm layers of the channel-mean ratio std(input) / sqrt(running_var) with the
        trained statistics (1 when drift leaves the activations as trained; 0.5 when they
        have shrunk to half).

    Raises:
        ValueError: If the model has no BatchNorm layer or ``batches`` is empty.
    """
    if not batches:
        raise ValueError("batches = [] is not allowed: expected at least one training batch.")

    def evaluate_recomputed(model: nn.Module) -> dict[str, float]:
        probe = copy.deepcopy(model).eval()
        layers = _batchnorm_layers(probe)
        if not layers:
            raise ValueError("the model has no BatchNorm layer: nothing to recompute.")
        device = next(probe.parameters()).device
        ratios: list[float] = []

        def measure(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].transpose(0, 1).flatten(1)  # (channels, batch * positions)
            std = x.std(dim=1)
            trained = (module.running_var + module.eps).sqrt()  # type: ignore[operator]
            ratios.append(float((std / trained).mean()))

        hooks = [layer.register_forward_pre_hook(measure) for layer in layers]
        with torch.no_grad():
            probe(batches[0][0].to(device))
        for hook in hooks:
            hook.remove()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average over the batches
            layer.train()
        with torch.no_grad():
            for inputs, _ in batches:
                probe(inputs.to(device))
        probe.eval()
        return {**eval_fn(probe), "bn_input_std_ratio": float(np.median(ratios))}

    return evaluate_recomputed


def batchnorm_drift_check(
    variants: Variants,
    spec: HWAStudySpec,
    results: pd.DataFrame,
    n_batches: int = 8,
    progress: bool = True,
) -> pd.DataFrame:
    """Does recomputing the BatchNorm statistics undo the collapse without drift compensation?

    Each analog variant is programmed and drifted without GDC with the study's seeds, as in
    :func:`run_variants`, and evaluated after its BatchNorm statistics are recomputed on
    ``n_batches`` training batches (:func:`batchnorm_recomputed_eval`). The same seeds give the
    same chips, so the rows pair up with the study's own no-GDC rows in ``results``, which
    supply the "as is" column (not evaluated again).

    Args:
        variants: The prepared variants.
        spec: The study.
        results: The table of :func:`run_variants` for ``spec``.
        n_batches: Training batches that re-estimate the statistics.
        progress: Show progress bars.

    Returns:
        Rows (variant, t_inference_s): mean over repetitions of the metric as is, with
        recomputed statistics, and ``bn_input_std_ratio``.

    Raises:
        ValueError: If the workload's model has no BatchNorm layer.
    """
    if not _batchnorm_layers(variants.fp_model):
        raise ValueError(f"workload {spec.workload!r} has no BatchNorm layer: nothing to check.")
    metric = variants.workload.metric
    batches = calibration_batches(variants.workload, check_int("n_batches", n_batches, 1))
    recompute = batchnorm_recomputed_eval(variants.workload.evaluate, batches)
    tables = [
        evaluate(
            model, recompute, spec.t_inferences, spec.n_reps, spec.seed, False, progress=progress
        ).assign(variant=name)
        for name, model in variants.models.items()
    ]
    recomputed = pd.concat(tables, ignore_index=True).groupby(["variant", "t_inference_s"])
    as_is = results[~results["drift_compensation"]].groupby(["variant", "t_inference_s"])
    out = pd.DataFrame(
        {
            f"{metric} without GDC": as_is[metric].mean(),
            f"{metric} without GDC, BN recomputed": recomputed[metric].mean(),
            "BN input std / trained std": recomputed["bn_input_std_ratio"].mean(),
        }
    )
    return out.loc[list(variants.models)]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (:func:`batchnorm_drift_check` applies)."""
    return bool(_batchnorm_layers(model))


def batchnorm_check_metrics(check: pd.DataFrame) -> dict[str, Any]:
    """:func:`batchnorm_drift_check` as JSON: per variant, each column's values by time."""
    out: dict[str, Any] = {}
    for name, part in check.groupby(level=0, sort=False):
        key = "_".join(str(name).lower().split())
        out[key] = {
            "t_inference_s": part.index.get_level_values(1).tolist(),
            **{str(column): part[column].tolist() for column in part.columns},
        }
    return out
