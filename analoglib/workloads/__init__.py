"""The three network families of the studies, trained and cached (CNN, RNN, transformer).

``load_workload(name, profile, data_source, seed, **overrides)`` returns a
:class:`~analoglib.workloads.base.Workload`; ``train_fp(workload)`` trains its floating-point
baseline once and caches it under ``data/cache/fp/``; ``train_hwa(workload, config, recipe)``
retrains it hardware-aware and caches it under ``data/cache/hwa/``.
"""

from analoglib._deprecation import moved_names
from analoglib.training.loops import TrainRecipe
from analoglib.workloads import cnn, rnn, transformer  # noqa: F401  (register the workloads)
from analoglib.workloads.base import (
    WORKLOADS,
    Workload,
    cache_path,
    load_workload,
    register,
    resolve_parameters,
    training_parameters,
)
from analoglib.workloads.train import cached_metrics, hwa_cache_path, train_fp, train_hwa

__all__ = [
    "WORKLOADS",
    "TrainRecipe",
    "Workload",
    "cache_path",
    "cached_metrics",
    "hwa_cache_path",
    "load_workload",
    "register",
    "resolve_parameters",
    "train_fp",
    "train_hwa",
    "training_parameters",
]

__getattr__ = moved_names(__name__, {"atomic_save": ("analoglib.cache", "atomic_save")})
