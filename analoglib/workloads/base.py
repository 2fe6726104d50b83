"""The workload interface shared by the studies: data, model, metric, training, cache.

A workload bundles, for one network family, the data loaders, the floating-point model, the
task metric with its chance level (for the normalised accuracy A*), an evaluation function
usable by :func:`analoglib.evaluate`, and the recipe of its floating-point (FP) baseline
training. Every knob of a workload is a profile parameter (``smoke``, ``default``, ``paper``),
overridable by keyword; the FP checkpoint is cached under ``data/cache/fp/<name>/`` keyed by
all parameters that determine it (:mod:`analoglib.workloads.train`).

References:
    Rasch et al. 2023 (the three network families); ``docs/model.md#metrics`` (A*).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from analoglib._deprecation import moved_names
from analoglib.cache import SIMULATION_REVISION, json_normalized, key_digest
from analoglib.metrics import normalized_accuracy
from analoglib.training.loops import TrainRecipe
from analoglib.utils import DATA_SOURCES, PROFILES, paths

__all__ = [
    "CACHE_VERSION",
    "EVAL_ONLY_PARAMETERS",
    "WORKLOADS",
    "Workload",
    "cache_path",
    "eval_parameters",
    "load_workload",
    "register",
    "resolve_parameters",
    "training_parameters",
]

log = logging.getLogger(__name__)

# Bump when a change of the training code invalidates every cached checkpoint.
CACHE_VERSION = 1
# Parameters that choose only the evaluation subset: they never change the trained weights,
# so they stay out of the cache key (a smaller eval set must not retrain).
EVAL_ONLY_PARAMETERS = frozenset(
    {"eval_split", "eval_lines", "n_eval", "eval_batch_size", "max_eval_batches"}
)

Batch = Any
Builder = Callable[[dict[str, Any]], "Workload"]


@dataclass
class Workload:
    """One network family on its task, ready to train, convert and evaluate.

    Attributes:
        name: Registry name (``"cnn"``, ``"rnn"``, ``"transformer"``).
        parameters: Every parameter that determines data, model and training (the cache key),
            including ``profile``, ``data_source`` and ``seed``.
        model: The floating-point model (untrained until :func:`train_fp`).
        train_loader: Training batches (shuffled with a seeded generator).
        eval_loader: Evaluation batches (fixed order).
        batch_loss: ``batch_loss(model, batch) -> (loss, n_samples)`` for training.
        evaluate: ``evaluate(model) -> {metric: value}`` over ``eval_loader``; usable as the
            ``eval_fn`` of :func:`analoglib.evaluate`. Its dict holds ``metric`` and ``"error"``.
        metric: Key of the headline task metric in ``evaluate``'s result.
        higher_is_better: Whether larger ``metric`` values are better.
        chance_error: Value of ``evaluate(...)["error"]`` at chance level, for A*.
        recipe: The FP training recipe.
        description: One line naming the network, the data and whether it is a stand-in.
        split_sizes: Number of samples (or tokens) of each split, for the record.
    """

    name: str
    parameters: dict[str, Any]
    model: nn.Module
    train_loader: Iterable[Batch]
    eval_loader: Iterable[Batch]
    batch_loss: Callable[[nn.Module, Batch], tuple[Tensor, int]]
    evaluate: Callable[[nn.Module], dict[str, float]]
    metric: str
    higher_is_better: bool
    chance_error: float
    recipe: TrainRecipe
    description: str = ""
    split_sizes: dict[str, int] = field(default_factory=dict)

    def normalized_accuracy(self, error: float, error_fp: float) -> float:
        """A* of an error value relative to the FP error and this workload's chance error."""
        return normalized_accuracy(error, error_fp, self.chance_error)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.parameters.items()))
        return f"Workload({self.name}: {self.description}; {params})"


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    profiles: Mapping[str, Mapping[str, Any]]


WORKLOADS: dict[str, _Entry] = {}


def register(name: str, profiles: Mapping[str, Mapping[str, Any]]) -> Callable[[Builder], Builder]:
    """Register a workload builder with its profile parameters.

    Args:
        name: Registry name.
        profiles: Parameters of each profile (``smoke``, ``default``, ``paper``); every profile
            must have the same keys.
    """
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ValueError(f"workload {name!r}: profiles {missing} are missing.")
    keys = {p: set(values) for p, values in profiles.items()}
    if len({frozenset(k) for k in keys.values()}) != 1:
        raise ValueError(f"workload {name!r}: every profile must define the same parameters.")

    def decorate(builder: Builder) -> Builder:
        WORKLOADS[name] = _Entry(builder, profiles)
        return builder

    return decorate


def resolve_parameters(
    name: str, profile: str, data_source: str, seed: int, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Profile parameters of a workload with overrides applied and validated."""
    if name not in WORKLOADS:
        raise ValueError(
            f"workload = {name!r} is not known: expected one of {', '.join(sorted(WORKLOADS))}."
        )
    if profile not in PROFILES:
        raise ValueError(
            f"profile = {profile!r} is not allowed: expected one of {', '.join(PROFILES)}."
        )
    if data_source not in DATA_SOURCES:
        raise ValueError(
            f"data_source = {data_source!r} is not allowed: expected one of "
            f"{', '.join(DATA_SOURCES)}."
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed = {seed!r} is not allowed: expected an integer.")
    parameters = dict(WORKLOADS[name].profiles[profile])
    unknown = sorted(set(overrides) - set(parameters))
    if unknown:
        raise ValueError(
            f"workload {name!r} has no parameter {', '.join(map(repr, unknown))}; its parameters "
            f"are: {', '.join(sorted(parameters))}."
        )
    parameters.update(overrides)
    parameters.update(profile=profile, data_source=data_source, seed=seed)
    return parameters


def load_workload(
    name: str,
    profile: str = "default",
    data_source: str = "offline",
    seed: int = 0,
    **overrides: Any,
) -> Workload:
    """Build a workload: data loaders, FP model (untrained), metric and training recipe.

    Args:
        name: ``"cnn"``, ``"rnn"`` or ``"transformer"`` (see :data:`WORKLOADS`).
        profile: ``"smoke"`` (seconds, for CI), ``"default"`` (offline, minutes on a CPU) or
            ``"paper"`` (the published setting, needs network access and usually a GPU).
        data_source: ``"offline"`` (shipped assets) or ``"hub"`` (public datasets and models).
        seed: Seed of model initialisation, data order and training.
        **overrides: Profile parameters to change (unknown names raise ``ValueError``).

    Raises:
        ValueError: For an unknown workload, profile, data source or parameter.
        FileNotFoundError: If offline data is missing (the message names what to install).
    """
    parameters = resolve_parameters(name, profile, data_source, seed, overrides)
    torch.manual_seed(seed)  # model initialisation of the builder
    return WORKLOADS[name].builder(parameters)


def training_parameters(workload: Workload) -> dict[str, Any]:
    """The workload parameters that determine the trained weights (all but evaluation-only)."""
    return {k: v for k, v in workload.parameters.items() if k not in EVAL_ONLY_PARAMETERS}


def cache_path(workload: Workload, kind: str = "fp", **extra: Any) -> Path:
    """``data/cache/<kind>/<name>/<hash>.pt``.

    The hash covers every training parameter of the workload (not the evaluation-only ones in
    :data:`EVAL_ONLY_PARAMETERS`), any ``extra`` key-value pairs (e.g. an HWA recipe) and, for
    every kind but the digital ``"fp"`` checkpoints,
    :data:`~analoglib.cache.SIMULATION_REVISION`.
    """
    key = {"name": workload.name, "version": CACHE_VERSION, **training_parameters(workload)}
    if kind != "fp":
        key["simulation"] = SIMULATION_REVISION
    digest = key_digest({**key, **extra})
    return paths.CACHE / kind / workload.name / f"{digest}.pt"


def eval_parameters(workload: Workload) -> dict[str, Any]:
    """The evaluation-only parameters of a workload (JSON-normalised), stored with its metrics."""
    return json_normalized(
        {k: v for k, v in workload.parameters.items() if k in EVAL_ONLY_PARAMETERS}
    )


__getattr__ = moved_names(
    __name__,
    {
        "atomic_save": ("analoglib.cache", "atomic_save"),
        "cached_metrics": ("analoglib.workloads.train", "cached_metrics"),
        "train_fp": ("analoglib.workloads.train", "train_fp"),
    },
)
