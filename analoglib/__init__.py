"""analoglib: a pure-PyTorch simulator of PCM analog in-memory-computing crossbars.

The user verbs follow aihwkit: :func:`convert_to_analog`, :func:`program`, :func:`drift`,
:func:`evaluate`, with explicit seeds for every random draw.

References:
    Rasch et al. 2023 (standard AIMC crossbar model); ``docs/model.md``.
"""

from analoglib import (  # noqa: E402
    cache,
    config,
    data,
    metrics,
    models,
    noise,
    optim,
    parallel,
    plotting,
    presets,
    runs,
    tiles,
    training,
    utils,
    workloads,
)
from analoglib._deprecation import moved_names
from analoglib._version import __version__
from analoglib.config import PCMConfig  # noqa: E402
from analoglib.inference import (  # noqa: E402
    drift,
    drift_analog_weights,
    evaluate,
    load,
    program,
    program_analog_weights,
    save,
    set_forward_seed,
)
from analoglib.metrics import mvm_error, normalized_accuracy, random_tile_mvm_error  # noqa: E402
from analoglib.nn import (  # noqa: E402
    analog_layers,
    convert_to_analog,
    convert_to_digital,
    named_analog_layers,
    replace_config,
)
from analoglib.summary import summary  # noqa: E402
from analoglib.utils import get_device, paths, seed_everything  # noqa: E402

__all__ = [
    "PCMConfig",
    "__version__",
    "analog_layers",
    "cache",
    "config",
    "convert_to_analog",
    "convert_to_digital",
    "data",
    "drift",
    "drift_analog_weights",
    "evaluate",
    "get_device",
    "load",
    "metrics",
    "models",
    "mvm_error",
    "named_analog_layers",
    "noise",
    "normalized_accuracy",
    "optim",
    "parallel",
    "paths",
    "plotting",
    "presets",
    "runs",
    "program",
    "program_analog_weights",
    "random_tile_mvm_error",
    "replace_config",
    "save",
    "seed_everything",
    "set_forward_seed",
    "summary",
    "tiles",
    "training",
    "utils",
    "workloads",
]

__getattr__ = moved_names(__name__, {"sweeps": ("analoglib.studies.nonideality_sensitivity", None)})
