"""Helpers shared by the tests (importable as ``helpers``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

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


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int) -> Iterator[None]:
    """A spawned test worker's gloo process group on 127.0.0.1, with one torch thread.

    One thread per process: two workers on a 2-core machine must not oversubscribe it.
    """
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()
