"""Deprecated: the post-training study is :mod:`analoglib.studies.glue_post_training`.

This module re-exports that study's names for one release (removed in 0.3.0) and warns on
import.
"""

from analoglib._deprecation import moved_names, warn_moved_module
from analoglib.studies.glue_post_training import *  # noqa: F403
from analoglib.studies.glue_post_training import __all__  # noqa: F401

__deprecated__ = True

warn_moved_module(__name__, "analoglib.studies.glue_post_training")

__getattr__ = moved_names(
    __name__, {"summary_metrics": ("analoglib.studies.glue_post_training", "results_metrics")}
)
