"""The version of analoglib (one place, read by the package and by the results files)."""

__version__ = "0.1.0"
