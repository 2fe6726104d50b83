"""The three network families of the studies, trained and cached (CNN, RNN, transformer).

``load_workload(name, profile, data_source, seed, **overrides)`` returns a
:class:`~analoglib.workloads.base.Workload`; ``train_fp(workload)`` trains its floating-point
baseline once and caches it under ``data/cache/fp/``.
"""

from analoglib.workloads import cnn, rnn, transformer  # noqa: F401  (register the workloads)
from analoglib.workloads.base import (
    WORKLOADS,
    TrainRecipe,
    Workload,
    atomic_save,
    cache_path,
    cached_metrics,
    load_workload,
    register,
    resolve_parameters,
    train_fp,
    training_parameters,
)

__all__ = [
    "WORKLOADS",
    "TrainRecipe",
    "Workload",
    "atomic_save",
    "cache_path",
    "cached_metrics",
    "load_workload",
    "register",
    "resolve_parameters",
    "train_fp",
    "training_parameters",
]
