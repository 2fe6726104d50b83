"""Post-training optimisers: input-range calibration and column conductance ranges.

Each optimiser runs on any converted model, is deterministic (given its seed where it
draws samples), returns a
:class:`~analoglib.optim.base.PostTrainingReport` of what it changed, and can be undone with
``report.undo()``. The post-training study of Lammie et al. 2024 that uses them is
:mod:`analoglib.studies.glue_post_training`.
"""

from analoglib._deprecation import moved_names
from analoglib.optim.base import (
    PostTrainingReport,
    default_run_batch,
    ideal_mode,
    run_calibration,
)
from analoglib.optim.conductance_range import optimize_conductance_ranges
from analoglib.optim.input_range import calibrate_input_ranges

__all__ = [
    "PostTrainingReport",
    "calibrate_input_ranges",
    "default_run_batch",
    "ideal_mode",
    "optimize_conductance_ranges",
    "run_calibration",
]

__getattr__ = moved_names(__name__, {"study": ("analoglib.studies.glue_post_training", None)})
