"""Metrics of the studies: MVM error and normalised accuracy A*.

References:
    Rasch et al. 2023; Le Gallo et al. 2023; ``docs/model.md#metrics``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from analoglib.config import PCMConfig
from analoglib.utils import derive_seed, make_generator

__all__ = ["mvm_error", "normalized_accuracy", "random_tile_mvm_error"]


def mvm_error(y: Tensor, y_ideal: Tensor) -> float:
    """Relative L2 error ``||y - y_ideal||_2 / ||y_ideal||_2`` over all elements.

    Raises:
        ValueError: If the shapes differ or ``y_ideal`` is all zeros.
    """
    if y.shape != y_ideal.shape:
        raise ValueError(f"y has shape {tuple(y.shape)} but y_ideal has {tuple(y_ideal.shape)}.")
    norm = torch.linalg.vector_norm(y_ideal.double())
    if norm == 0:
        raise ValueError("y_ideal is all zeros: the relative MVM error is undefined.")
    return float(torch.linalg.vector_norm((y - y_ideal).double()) / norm)


def normalized_accuracy(error: float, error_fp: float, error_chance: float) -> float:
    """Normalised accuracy ``A* = 1 - (error - error_fp) / (error_chance - error_fp)``.

    ``error`` is the task's error metric (e.g. 1 - top-1 accuracy); A* is 1 at floating-point
    accuracy and 0 at chance. Iso-accuracy means ``A*_1h >= 0.99``.

    Raises:
        ValueError: If ``error_chance == error_fp``.

    References:
        ``docs/model.md#metrics``.
    """
    if error_chance == error_fp:
        raise ValueError(
            f"error_chance = error_fp = {error_fp!r}: A* is undefined when chance equals FP."
        )
    return 1.0 - (error - error_fp) / (error_chance - error_fp)


def random_tile_mvm_error(
    config: PCMConfig,
    t_inference_s: float = 1.0,
    seed: int = 0,
    size: int = 512,
    n_vectors: int = 1000,
    weight_std: float = 0.246,
    input_sparsity: float = 0.5,
    n_programmings: int = 1,
    input_range: float | None = None,
) -> float:
    """MVM error of one random ``size x size`` tile under ``config``.

    The setting of Le Gallo et al. 2023: weights drawn from N(0, ``weight_std``) and clipped to
    [-1, 1]; inputs uniform in [-1, 1] with a fraction ``input_sparsity`` set to 0. The tile sees
    the inputs directly (input range off) or through a fixed ``input_range``, is programmed,
    drifted to ``t_inference_s`` and read with the full forward model (drift compensation as
    configured).

    Args:
        config: Crossbar configuration (copied; its input range is switched off).
        t_inference_s: Seconds after programming.
        seed: Seed of weights, inputs, programming, drift and forward noise.
        size: Tile rows and columns.
        n_vectors: Number of input vectors.
        weight_std: Standard deviation of the weights before clipping.
        input_sparsity: Fraction of zero inputs.
        n_programmings: Programming repetitions pooled into the error.
        input_range: Fixed input range r of the tile (inputs clipped to [-r, r] and divided
            by r), or None for no input range.

    Returns:
        The relative L2 error (0.13 means 13 %).

    References:
        Le Gallo et al. 2023 (13 % at t = 1 s); Rasch et al. 2023 (about 15 %);
        ``docs/model.md#metrics``.
    """
    from analoglib.inference import drift, program, set_forward_seed
    from analoglib.nn.linear import AnalogLinear

    if input_range is not None and not (math.isfinite(input_range) and input_range > 0):
        raise ValueError(
            f"input_range = {input_range!r} is not allowed: expected a range > 0 or None."
        )
    config = config.copy()
    ranges = config.pre_post.input_range
    ranges.enable = input_range is not None
    if input_range is not None:
        ranges.learn_input_range = False
        ranges.init_value = float(input_range)
        ranges.init_from_data = 0
    data = make_generator(derive_seed(seed, "tile_data"))
    weight = (torch.randn(size, size, generator=data) * weight_std).clamp_(-1.0, 1.0)
    x = torch.rand(n_vectors, size, generator=data).mul_(2).sub_(1)
    x.mul_(torch.rand(n_vectors, size, generator=data) >= input_sparsity)
    y_ideal = x @ weight.T
    linear = torch.nn.Linear(size, size, bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    layer = AnalogLinear.from_digital(linear, config)
    outputs = []
    for rep in range(n_programmings):
        program(layer, derive_seed(seed, "program", rep) % 2**62)
        drift(layer, t_inference_s, derive_seed(seed, "drift", rep) % 2**62)
        set_forward_seed(layer, derive_seed(seed, "forward", rep) % 2**62)
        with torch.no_grad():
            outputs.append(layer(x))
    return mvm_error(torch.cat(outputs), y_ideal.repeat(n_programmings, 1))
