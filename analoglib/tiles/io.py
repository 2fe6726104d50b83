"""Input/output model of a training tile: DAC, MVM, output noise, ADC, noise and bound management.

Training tiles read their weights three ways: the forward pass (``y = W x``), the backward
pass (``x_grad = W^T d``) and the one-hot reads of transfer algorithms. Each read passes through
the periphery with aihwkit's ``IOParameters`` names and defaults:

1. noise management ``abs_max``: the input vector is divided by its largest magnitude
   ``alpha = max|x|`` (capped at ``nm_thres`` when set) so that it spans the DAC range, and the
   output is multiplied by ``alpha`` again. Without it, the small errors of the backward pass
   would fall below one DAC level and read as zero;
2. the DAC: quantise to ``inp_res`` steps, clip to ``inp_bound``;
3. the analog product and additive Gaussian output noise ``out_noise`` (per output, per read);
4. the ADC: quantise to ``out_res`` steps, clip to ``out_bound``;
5. bound management ``iterative`` (forward pass only, as in aihwkit): a sample whose output
   hits the ADC bound (either sign) is recomputed with its input halved, then quartered, ...,
   until no output saturates or the reduction in use exceeds ``max_bm_factor`` or
   ``max_bm_res / inp_res`` (so with the defaults at most 32); the output is multiplied back.

The backward of these reads is the ideal product (straight through the converters), as in
aihwkit's training tiles; the layer calls the reads explicitly.

References:
    Gokmen, Onen & Haensch 2017 (noise and bound management); ``docs/training.md#io-model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from analoglib.random import normal
from analoglib.tiles.tile import quantize

__all__ = ["NOISE_MANAGEMENT", "BOUND_MANAGEMENT", "IOParameters", "io_read"]

#: Supported ``noise_management`` values.
NOISE_MANAGEMENT = ("abs_max", "none")
#: Supported ``bound_management`` values.
BOUND_MANAGEMENT = ("iterative", "none")


@dataclass(frozen=True)
class IOParameters:
    """Periphery of one read direction of a training tile (aihwkit ``IOParameters`` defaults).

    All values are in normalised units: inputs in ``[-inp_bound, inp_bound]``, outputs in
    units of a full-scale input on a unit weight.

    Attributes:
        is_perfect: No converters, no noise, no management: the exact product.
        inp_res: DAC step (1 / (2^7 - 2): 7 bits); 0 for no quantisation.
        inp_bound: DAC range.
        out_res: ADC step (1 / (2^9 - 2): 9 bits); 0 for no quantisation.
        out_bound: ADC range; 0 for no clipping.
        out_noise: Standard deviation of the additive output noise.
        noise_management: One of :data:`NOISE_MANAGEMENT`.
        bound_management: One of :data:`BOUND_MANAGEMENT` (ignored for backward reads).
        max_bm_factor: Largest input reduction of bound management.
        max_bm_res: Largest effective input resolution ``reduction * inp_res``.
        nm_thres: Cap of the noise-management factor (0: none).
    """

    _name: ClassVar[str] = "io"

    is_perfect: bool = False
    inp_res: float = 1 / (2**7 - 2)
    inp_bound: float = 1.0
    out_res: float = 1 / (2**9 - 2)
    out_bound: float = 12.0
    out_noise: float = 0.06
    noise_management: str = "abs_max"
    bound_management: str = "iterative"
    max_bm_factor: int = 1000
    max_bm_res: float = 0.25
    nm_thres: float = 0.0

    def __post_init__(self) -> None:
        for name in ("inp_res", "out_res", "out_bound", "out_noise", "nm_thres", "max_bm_res"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"io.{name} = {value!r} is not allowed: expected a number >= 0.")
        if not (isinstance(self.inp_bound, (int, float)) and self.inp_bound > 0):
            raise ValueError(f"io.inp_bound = {self.inp_bound!r} is not allowed: expected > 0.")
        if not (isinstance(self.max_bm_factor, int) and self.max_bm_factor >= 1):
            raise ValueError(
                f"io.max_bm_factor = {self.max_bm_factor!r} is not allowed: expected an "
                "integer >= 1."
            )
        if self.noise_management not in NOISE_MANAGEMENT:
            raise ValueError(
                f"io.noise_management = {self.noise_management!r} is not allowed: expected one "
                f"of {NOISE_MANAGEMENT}."
            )
        if self.bound_management not in BOUND_MANAGEMENT:
            raise ValueError(
                f"io.bound_management = {self.bound_management!r} is not allowed: expected one "
                f"of {BOUND_MANAGEMENT}."
            )

    @classmethod
    def perfect(cls) -> IOParameters:
        """The exact product (no converters, no noise)."""
        return cls(is_perfect=True)

    def replace(self, **changes: Any) -> IOParameters:
        """A copy with ``changes`` applied (validated)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


def _product(x: Tensor, weight: Tensor, transposed: bool) -> Tensor:
    # forward: (tiles, batch, rows) x (tiles, out, rows) -> (tiles, batch, out)
    # backward: (tiles, batch, out) x (tiles, out, rows) -> (tiles, batch, rows)
    return torch.bmm(x, weight) if transposed else torch.bmm(x, weight.transpose(1, 2))


def _converted(
    x: Tensor, weight: Tensor, io: IOParameters, transposed: bool, generator: torch.Generator | None
) -> Tensor:
    """DAC, product, output noise and ADC of already scaled inputs."""
    x = quantize(x.clone(), io.inp_res or None, io.inp_bound)
    z = _product(x, weight, transposed)
    if io.out_noise > 0:
        if generator is None:
            raise ValueError("a noisy read needs a torch.Generator (generator=None given).")
        z.add_(normal(z.shape, generator, z.device, z.dtype), alpha=io.out_noise)
    if io.out_res > 0:
        z.div_(io.out_res).round_().mul_(io.out_res)
    return z


@torch.no_grad()
def io_read(
    x: Tensor,
    weight: Tensor,
    io: IOParameters,
    *,
    transposed: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One read of stacked tiles through the periphery (see the module docstring).

    Args:
        x: ``(tiles, batch, rows)`` inputs for a forward read, ``(tiles, batch, out)`` errors
            for a backward read (``transposed=True``).
        weight: ``(tiles, out, rows)`` weights as read by the tile.
        io: The periphery of this direction.
        transposed: True for the backward read ``W^T d`` (bound management never applies).
        generator: Source of the output noise.

    Returns:
        ``(tiles, batch, out)`` forward outputs or ``(tiles, batch, rows)`` backward outputs.
    """
    if io.is_perfect:
        return _product(x, weight, transposed)
    if io.noise_management == "abs_max":
        alpha = x.abs().amax(dim=2, keepdim=True)  # (tiles, batch, 1)
        if io.nm_thres > 0:
            alpha = alpha.clamp(max=io.nm_thres)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    else:
        alpha = torch.ones_like(x[..., :1])
    bound = io.out_bound if io.out_bound > 0 else None
    if transposed or io.bound_management == "none" or bound is None:
        z = _converted(x / alpha, weight, io, transposed, generator)
        if bound is not None:
            z.clamp_(-bound, bound)
        return z * alpha

    # Iterative bound management: recompute saturated samples with halved inputs.
    max_reduction = float(io.max_bm_factor)
    if io.inp_res > 0:
        max_reduction = min(max_reduction, io.max_bm_res / io.inp_res)
    reduction = torch.ones_like(alpha)  # (tiles, batch, 1)
    z = _converted(x / alpha, weight, io, transposed, generator)
    while True:
        saturated = (z.abs() > bound).any(dim=2, keepdim=True)  # (tiles, batch, 1)
        # aihwkit stops once the reduction in use exceeds the limit
        retry = saturated & (reduction <= max_reduction)
        if not bool(retry.any()):
            break
        reduction = torch.where(retry, reduction * 2, reduction)
        # every sample is recomputed (one batched product), only the retried ones are kept
        again = _converted(x / (alpha * reduction), weight, io, transposed, generator)
        z = torch.where(retry, again, z)
    z.clamp_(-bound, bound)
    return z * (alpha * reduction)
