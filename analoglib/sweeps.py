"""Deprecated: the nonideality sweeps are :mod:`analoglib.studies.nonideality_sensitivity`.

This module re-exports that study's names for one release (removed in 0.3.0) and warns on
import.
"""

from analoglib._deprecation import warn_moved_module
from analoglib.studies.nonideality_sensitivity import *  # noqa: F403
from analoglib.studies.nonideality_sensitivity import __all__  # noqa: F401

__deprecated__ = True

warn_moved_module(__name__, "analoglib.studies.nonideality_sensitivity")
