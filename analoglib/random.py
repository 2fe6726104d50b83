"""Random draws of the simulator, all from explicit generators.

Every noise source (programming noise, drift exponents, read noise, output noise, weight
modifiers) draws through :func:`normal`, so the global RNG is never touched and the same seeds
give bit-identical results on one machine.

On the CPU, ``torch.randn`` fills one element at a time from a single Mersenne-Twister stream.
Large draws are therefore split into a fixed number of chunks, each filled from its own
generator (seeded by one draw from the given generator) in a thread pool. The chunk count is
fixed, so results do not depend on the number of threads. On CUDA, ``torch.randn`` is used.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

__all__ = ["normal"]

# Draws smaller than this use one torch.randn call (the thread hand-off would dominate).
_PARALLEL_MIN = 1 << 17
# Fixed number of sub-streams of a large draw (keeps results thread-count independent).
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
        generator: Source of randomness (on ``device``); advanced by the draw.
        device: Device of the result.
        dtype: Floating-point type of the result.

    Raises:
        ValueError: If ``generator`` is not a ``torch.Generator``.
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator = {generator!r} is not allowed: every noise draw needs a torch.Generator."
        )
    device = torch.device(device)
    numel = math.prod(shape)
    if device.type != "cpu" or numel < _PARALLEL_MIN:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    seeds = torch.randint(0, 2**62, (_CHUNKS,), generator=generator).tolist()
    out = torch.empty(numel, dtype=dtype)
    chunks = out.chunk(_CHUNKS)

    def fill(index: int) -> None:
        chunk_generator = torch.Generator().manual_seed(seeds[index])
        chunks[index].normal_(generator=chunk_generator)

    list(_pool().map(fill, range(len(chunks))))
    return out.view(tuple(shape))
