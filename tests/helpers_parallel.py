"""Toy point functions for tests/test_parallel.py.

They live in their own light module (no pytest import) because worker processes must import
them by name: pytest puts tests/ on ``sys.path`` (rootdir-relative "prepend" import mode, no
``__init__.py``), spawned workers inherit the parent's ``sys.path``, and pickle refers to
module-level functions as ``helpers_parallel.<name>``.

A point is a tuple ``(seed, n, action, marker)``: ``action`` is ``""`` (just compute), or
``"raise"`` / ``"exit"`` to raise an exception / kill the worker process, but only on the first
attempt: the first attempt creates the file ``marker``, later attempts compute normally.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

Point = tuple[int, int, str, str]


def point(seed: int, n: int = 8, action: str = "", marker: str = "") -> Point:
    return (seed, n, action, marker)


def compute(p: Point) -> list[float]:
    """A small seeded torch workload (matmul, conv2d, LSTM) reduced to a list of floats."""
    seed, n, action, marker = p
    if action and not Path(marker).exists():
        with open(marker, "w") as handle:
            handle.write("first attempt\n")
            handle.flush()
            os.fsync(handle.fileno())
        if action == "raise":
            raise ValueError(f"boom at seed {seed}")
        if action == "exit":
            os._exit(1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        a = torch.randn(n, 128, generator=g) @ torch.randn(128, 64, generator=g)
        x = torch.randn(2, 3, 12, 12, generator=g)
        conv = torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3, generator=g), padding=1)
        lstm = torch.nn.LSTM(8, 16, batch_first=True)
        for parameter in lstm.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.3)
        h = lstm(torch.randn(2, 5, 8, generator=g))[0]
    return [float(a.sum()), float(a.square().mean()), float(conv.sum()), float(h.sum())]


def num_threads(p: Point) -> int:
    """The intra-op thread count torch uses for this call."""
    return torch.get_num_threads()
