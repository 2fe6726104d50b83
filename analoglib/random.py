"""Random draws of the simulator, all from explicit generators.

Every noise source (programming noise, drift exponents, read noise, output noise, weight
modifiers) draws through :func:`normal`, so the global RNG is never touched and the same seeds
give bit-identical results on one machine.

On the CPU, large draws come from NumPy's PCG64 streams filled in parallel threads (several
times faster than ``torch.randn``'s single-threaded Box-Muller on 2 cores). The stream is seeded
by one draw from the given ``torch.Generator`` and split into a fixed number of chunks, so the
result does not depend on the thread count. On CUDA, ``torch.randn`` is used.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

__all__ = ["normal", "uniform"]

# Draws smaller than this use torch directly (thread start-up would dominate).
_PARALLEL_MIN = 1 << 16
# Fixed number of independent sub-streams per draw (keeps results thread-count independent).
_CHUNKS = 8
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(_CHUNKS, torch.get_num_threads())))
    return _POOL


def normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal samples of ``shape``.

    Args:
        shape: Output shape.
        generator: Source of randomness; advanced by the draw.
        device: Device of the result (and of ``generator``).
        dtype: Floating-point type of the result.
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator = {generator!r} is not allowed: every noise draw needs a torch.Generator."
        )
    device = torch.device(device)
    numel = math.prod(shape)
    if (
        device.type != "cpu"
        or numel < _PARALLEL_MIN
        or dtype
        not in (
            torch.float32,
            torch.float64,
        )
    ):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    children = np.random.SeedSequence(seed).spawn(_CHUNKS)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    out = np.empty(numel, dtype=np_dtype)
    bounds = np.linspace(0, numel, _CHUNKS + 1).astype(np.int64)

    def fill(index: int) -> None:
        rng = np.random.Generator(np.random.PCG64(children[index]))
        rng.standard_normal(dtype=np_dtype, out=out[bounds[index] : bounds[index + 1]])

    list(_pool().map(fill, range(_CHUNKS)))
    return torch.from_numpy(out).view(tuple(shape))


def uniform(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform samples in [0, 1) of ``shape``."""
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)
