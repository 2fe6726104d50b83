"""Helpers shared by the tests (importable as ``helpers``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import numpy as np
import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float, atol: float) -> None:
    """|actual - expected| <= atol + rtol |expected| elementwise, shapes equal.

    NumPy's check: torch.testing.assert_close imports torch.distributed (~1 s per worker).
    """
    np.testing.assert_allclose(
        actual.detach().cpu().double().numpy(),
        expected.detach().cpu().double().numpy(),
        rtol=rtol,
        atol=atol,
    )


def gen(seed: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)
