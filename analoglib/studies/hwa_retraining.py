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
    Rasch et al. 2023; ``aimc-model.md`` sections 10, 12 and 13.1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from torch import nn

from analoglib.config import PCMConfig
from analoglib.inference import evaluate
from analoglib.presets import standard_hwa_2023
from analoglib.training.hwa import HWARecipe

__all__ = [
    "HWA_PROFILES",
    "PUBLISHED_RASCH_2023",
    "compare_with_published",
    "evaluate_variants",
    "hwa_recipe",
    "normalized_accuracy_table",
    "results_metrics",
]


#: HWA recipe, weight noise and evaluation size of each workload and profile. ``recipe``: the
#: :class:`HWARecipe`; ``config``: config fields set on the standard preset
#: :func:`~analoglib.presets.standard_hwa_2023` (which clips at 1 and remaps channelwise):
#: PCM-like weight noise (and layer-gaussian clipping for the LSTM) as in ``aimc-model.md``
#: 10.2, additive noise 0.06 for the transformer as in 10.4; ``eval_batches``: evaluation
#: batches per evaluation in the study (0: all); ``calibration_batches``: training batches
#: that calibrate the input ranges of the direct-mapping baseline. The default profiles are sized
#: from timed steps for at most about 30 minutes per workload on two idle CPU cores (HWA
#: training plus 48 evaluations at n_reps = 3): CNN 150 analog steps of batch 128 (about 5 s
#: each) and 500 test images per evaluation; LSTM 600 steps (about 1 s) and 12 test
#: segments; MiniLM 200 steps (about 2.5 s) and 256 validation sentences.
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
                "max_steps": 75,
                "lr_decay": 0.5,
                "ramp_steps": 50,
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
                "ramp_steps": 20 * 1000,
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
                "max_steps": 300,
                "grad_clip": 0.25,
                "lr_decay": 0.5,
                "ramp_steps": 200,
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
                "max_steps": 200,
                "grad_clip": 1.0,
                "ramp_steps": 60,
                "distill_weight": 0.5,
            },
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 4,
            "calibration_batches": 8,
        },
        "paper": {
            "recipe": {"epochs": 20, "lr": 5e-5, "grad_clip": 1.0},
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
#: percent (``aimc-model.md`` section 13.1); None where no number is published.
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
    (``aimc-model.md`` section 12), then mean and sample std.

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
        ``aimc-model.md`` section 13.1.
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
