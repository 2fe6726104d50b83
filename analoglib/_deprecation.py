"""Lazy aliases for names that moved: they keep working for one release, with a warning.

A package that lost names defines ``__getattr__ = moved_names(__name__, {...})`` (PEP 562):
reading an old name imports its new home, warns with a ``DeprecationWarning`` naming the new
path, and returns the very same object. Nothing is imported until an old name is read, so
``python -W error::DeprecationWarning -c "import analoglib"`` stays silent.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REMOVED_IN", "moved_names", "warn_moved_module"]

#: Release that removes the deprecated aliases.
REMOVED_IN = "0.3.0"


def moved_names(module: str, moved: Mapping[str, tuple[str, str | None]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``moved`` (old name -> (new module, new name)).

    Args:
        module: ``__name__`` of the module that lost the names.
        moved: For each old name, the module that now holds it and its name there (None: the
            old name was a module, and the new module itself is returned).

    Returns:
        The ``__getattr__`` function; unknown names raise ``AttributeError`` as usual.
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, new_name = moved[name]
        new_path = new_module if new_name is None else f"{new_module}.{new_name}"
        warnings.warn(
            f"{module}.{name} moved to {new_path}; the old name is removed in analoglib "
            f"{REMOVED_IN}.",
            DeprecationWarning,
            stacklevel=2,
        )
        home = importlib.import_module(new_module)
        return home if new_name is None else getattr(home, new_name)

    return __getattr__


def warn_moved_module(old: str, new: str) -> None:
    """Warn (at import of a shim module) that module ``old`` is now ``new``."""
    warnings.warn(
        f"module {old} moved to {new}; the old module is removed in analoglib {REMOVED_IN}.",
        DeprecationWarning,
        stacklevel=3,
    )
