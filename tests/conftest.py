"""Test-wide settings: offline hubs, no progress bars, headless plots, GPU tests skip on CPU."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

# Before anything imports transformers/datasets/matplotlib: accidental hub calls fail fast.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANALOGLIB_PROGRESS": "0",
    "MPLBACKEND": "agg",
}.items():
    os.environ.setdefault(_name, _value)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, one intra-op thread per worker process.

    Two workers with two torch threads each oversubscribe a 2-core machine, and OpenMP
    spin-waits then make the suite several times slower.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def _cuda_available() -> bool:
    import torch  # imported lazily: only runs that select `gpu` tests pay for it

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked `gpu` when CUDA is not available."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def cuda() -> torch.device:
    """Return `torch.device("cuda")`, or skip the test when CUDA is not available."""
    if not _cuda_available():
        pytest.skip("needs CUDA (torch.cuda.is_available() is False)")
    import torch

    return torch.device("cuda")
