"""Split an ``nn.Sequential`` into M contiguous pipeline stages balanced by a per-module cost.

The default cost of a module is the number of 512 x 512 crossbar tiles its ``nn.Linear`` and
``nn.Conv2d`` layers need (``ceil(rows / 512) * ceil(cols / 512)`` per layer), because a stage's
clock cycle is set by its slowest tile work. Modules with zero cost (activations, pooling,
flattening) never start a stage: they join the stage of the cost-carrying module before them
(leading ones join the first stage).

References:
    Wu et al. 2024/2026, arXiv 2410.15155; ``docs/pipeline.md#partitioning``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from analoglib.nn.trainable import AnalogTrainLayer

__all__ = ["TILE_SIZE", "partition", "stage_costs", "tile_count"]

#: Rows and columns of one crossbar tile.
TILE_SIZE = 512

Cost = Callable[[nn.Module], float]


def tile_count(module: nn.Module) -> int:
    """Crossbar tiles of every ``nn.Linear`` and ``nn.Conv2d`` inside ``module`` (itself too).

    Trainable analog layers (:mod:`analoglib.nn.trainable`) count the input tiles of their own
    mapping times ``ceil(out / 512)``.

    A layer with weight ``(out, in, *kernel)`` is an ``out x (in * prod(kernel))`` matrix and
    needs ``ceil(in * prod(kernel) / 512) * ceil(out / 512)`` tiles (a grouped convolution is
    counted as one such matrix of its per-group inputs).

    References:
        ``docs/pipeline.md#partitioning``.
    """
    tiles = 0
    for layer in module.modules():
        if isinstance(layer, AnalogTrainLayer):  # trainable analog layers know their mapping
            mapping = layer.tile.mapping
            tiles += mapping.tiles_in * math.ceil(mapping.out_features / TILE_SIZE)
        elif isinstance(layer, (nn.Linear, nn.Conv2d)):
            out_size = layer.weight.shape[0]
            in_size = layer.weight[0].numel()  # in (per group) x kernel
            tiles += math.ceil(in_size / TILE_SIZE) * math.ceil(out_size / TILE_SIZE)
    return tiles


def _costs(model: nn.Sequential, cost: Cost) -> list[float]:
    costs = [float(cost(module)) for module in model]
    bad = [c for c in costs if not c >= 0 or math.isinf(c)]
    if bad:
        raise ValueError(f"cost = {bad[0]!r} is not allowed: expected finite costs >= 0.")
    return costs


def _balanced_splits(costs: list[float], parts: int) -> list[int]:
    """Start indices of ``parts`` contiguous groups minimising the largest group sum."""
    n = len(costs)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    # best[k][i]: smallest largest sum for the first i items in k groups; cut[k][i]: last start
    best = [[math.inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for k in range(1, parts + 1):
        for i in range(k, n + 1):
            for start in range(k - 1, i):
                value = max(best[k - 1][start], prefix[i] - prefix[start])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, start
    starts, i = [], n
    for k in range(parts, 0, -1):
        i = cut[k][i]
        starts.append(i)
    return starts[::-1]


def partition(
    model: nn.Sequential, num_stages: int, cost: Cost | None = None
) -> list[nn.Sequential]:
    """Split ``model`` into ``num_stages`` contiguous stages with balanced cost.

    The split minimises the largest stage cost; each stage holds at least one cost-carrying
    module, and zero-cost modules stay with the cost-carrying module before them. The stages
    share the modules (and parameters) of ``model``, so training the stages trains ``model``.

    Args:
        model: The network, an ``nn.Sequential`` of top-level modules.
        num_stages: Number of stages M, 1 <= M <= number of modules with cost > 0.
        cost: Cost of one top-level module (>= 0); default :func:`tile_count`.

    Returns:
        M ``nn.Sequential`` stages, in order; applied one after the other they compute
        ``model``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Sequential``.
        ValueError: If ``num_stages`` is out of range or a cost is negative or not finite.

    References:
        ``docs/pipeline.md#partitioning``.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}.")
    costs = _costs(model, cost or tile_count)
    carriers = [i for i, c in enumerate(costs) if c > 0]
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise ValueError(f"num_stages = {num_stages!r} is not allowed: expected an integer >= 1.")
    if num_stages > len(carriers):
        raise ValueError(
            f"num_stages = {num_stages} is not allowed: the model has {len(carriers)} modules "
            f"with cost > 0, so 1 <= num_stages <= {len(carriers)}."
        )
    starts = _balanced_splits([costs[i] for i in carriers], num_stages)
    # a stage starts at its first carrier; the first stage also takes any leading zero-cost ones
    bounds = [0] + [carriers[k] for k in starts[1:]] + [len(model)]
    modules = list(model)
    return [nn.Sequential(*modules[a:b]) for a, b in zip(bounds, bounds[1:])]


def stage_costs(stages: list[nn.Sequential], cost: Cost | None = None) -> list[float]:
    """Total cost of each stage (default: crossbar tiles, :func:`tile_count`).

    References:
        ``docs/pipeline.md#partitioning``.
    """
    return [sum(float((cost or tile_count)(m)) for m in stage) for stage in stages]
