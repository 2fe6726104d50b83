"""Seeding, devices, paths, progress bars and result files."""

from __future__ import annotations

import json
import os
import random
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analoglib._version import __version__
from analoglib.cache import atomic_write_text, jsonable

__all__ = [
    "COMMITTED_OUTPUTS",
    "DATA_SOURCES",
    "PROFILES",
    "SCRATCH_OUTPUTS",
    "check_int",
    "derive_seed",
    "get_device",
    "git_sha",
    "make_generator",
    "model_device",
    "paths",
    "progress_enabled",
    "results_path",
    "seed_everything",
    "write_results",
]

#: Parameter profiles of the notebooks and workloads: CI-sized, offline default, published.
PROFILES = ("smoke", "default", "paper")
#: Where data and models come from: the shipped offline assets, or the public hubs.
DATA_SOURCES = ("offline", "hub")
#: ``output_dir`` value that writes a run's figures and results JSON to the project's own
#: folders (``figures/``, ``build/results/<profile>/``); only the Makefile's targets pass it.
COMMITTED_OUTPUTS = "committed"
#: Default ``output_dir`` of every notebook: exploratory runs never touch the committed files.
SCRATCH_OUTPUTS = "build/scratch"


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) >= ``minimum``.

    Raises:
        ValueError: Naming ``name``, the value and the allowed range otherwise.
    """
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= {minimum}.")
    return int(value)


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of a model's first parameter (or buffer); the CPU for a model without either."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def derive_seed(seed: int, *keys: int | str) -> int:
    """Independent 63-bit seed for a sub-stream identified by ``keys`` (e.g. a layer index).

    Uses NumPy's ``SeedSequence`` so that nearby seeds and keys give unrelated streams.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed = {seed!r} is not allowed: expected an integer.")
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(key.encode()) if isinstance(key, str) else int(key) & 0xFFFFFFFF)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed ``random``, NumPy and torch (CPU and CUDA).

    Args:
        seed: The global seed.
        deterministic: Also ask torch for deterministic algorithms (warn-only mode).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; other values pass through."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def progress_enabled(progress: bool = True) -> bool:
    """Whether to show progress bars: ``progress`` and not ``ANALOGLIB_PROGRESS=0``."""
    return progress and os.environ.get("ANALOGLIB_PROGRESS", "1") != "0"


def _find_root() -> Path:
    env = os.environ.get("ANALOGLIB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


@dataclass(frozen=True)
class _Paths:
    """Project paths; notebooks and library code use these, never CWD-relative strings."""

    ROOT: Path

    @property
    def DATA(self) -> Path:
        return self.ROOT / "data"

    @property
    def CACHE(self) -> Path:
        return self.DATA / "cache"

    @property
    def FIGURES(self) -> Path:
        return self.ROOT / "figures"

    @property
    def BUILD(self) -> Path:
        return self.ROOT / "build"

    def output_root(self, output_dir: str) -> Path | None:
        """``None`` for :data:`COMMITTED_OUTPUTS`, else ``output_dir`` (relative to ``ROOT``).

        Raises:
            ValueError: If ``output_dir`` is not a non-empty string.
        """
        if not isinstance(output_dir, str) or not output_dir.strip():
            raise ValueError(
                f"output_dir = {output_dir!r} is not allowed: expected {COMMITTED_OUTPUTS!r} "
                f"(the project's own folders) or a folder such as {SCRATCH_OUTPUTS!r}."
            )
        if output_dir == COMMITTED_OUTPUTS:
            return None
        return self.ROOT / output_dir

    def figures_dir(self, profile: str, output_dir: str = COMMITTED_OUTPUTS) -> Path:
        """Where a run's figures go.

        With ``output_dir = "committed"``: ``figures/`` (default profile) or
        ``build/<profile>/figures``; otherwise ``<output_dir>/<profile>/figures``.
        """
        _check_profile(profile)
        root = self.output_root(output_dir)
        if root is not None:
            return root / profile / "figures"
        if profile == "default":
            return self.FIGURES
        return self.BUILD / profile / "figures"


paths = _Paths(_find_root())


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(
            f"profile = {profile!r} is not allowed: expected one of {', '.join(PROFILES)}."
        )


def results_path(stem: str, profile: str, output_dir: str = COMMITTED_OUTPUTS) -> Path:
    """``build/results/<profile>/<stem>.json``, or ``<output_dir>/<profile>/results/<stem>.json``.

    ``output_dir = "committed"`` (:data:`COMMITTED_OUTPUTS`) names the project's own folders.
    """
    _check_profile(profile)
    root = paths.output_root(output_dir)
    if root is not None:
        return root / profile / "results" / f"{stem}.json"
    return paths.BUILD / "results" / profile / f"{stem}.json"


def git_sha() -> str | None:
    """Current git commit of the project, or None outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_results(
    stem: str,
    profile: str,
    parameters: dict[str, Any],
    metrics: dict[str, Any],
    data_source: str = "offline",
    device: str | torch.device = "cpu",
    output_dir: str = COMMITTED_OUTPUTS,
) -> Path:
    """Write the results JSON of a notebook run (:func:`results_path`).

    The file carries the parameters that made it, the headline metrics, the versions of
    analoglib and torch, the device and the git commit.
    """
    path = results_path(stem, profile, output_dir)
    record = {
        "stem": stem,
        "profile": profile,
        "data_source": data_source,
        "parameters": jsonable(parameters),
        "metrics": jsonable(metrics),
        "versions": {"analoglib": __version__, "torch": torch.__version__},
        "device": str(device),
        "git_sha": git_sha(),
    }
    return atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
