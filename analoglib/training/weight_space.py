"""Optimiser steps on the effective weights of analog layers (HWA training).

References:
    ``docs/model.md#hwa-mechanics``; ``docs/aihwkit.md#differences``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from analoglib.nn.base import AnalogLayerBase
from analoglib.nn.convert import analog_layers

__all__ = ["register_step_hooks", "weight_space_updates"]


def register_step_hooks(
    optimizer: torch.optim.Optimizer,
    before: Callable[[], None],
    after: Callable[[], None],
) -> tuple[RemovableHandle, RemovableHandle]:
    """Run ``before()`` and ``after()`` once around every ``optimizer.step()``.

    torch runs step hooks once per patched ``step`` in the call chain, so an optimiser subclass
    whose ``step`` calls ``super().step()`` fires them twice; the hooks here act only at the
    outermost level.

    Returns:
        The handles of the pre-hook and the post-hook.
    """
    depth = 0

    def pre(*_: Any) -> None:
        nonlocal depth
        depth += 1
        if depth == 1:
            before()

    def post(*_: Any) -> None:
        nonlocal depth
        if depth == 1:
            after()
        depth -= 1

    return optimizer.register_step_pre_hook(pre), optimizer.register_step_post_hook(post)


def _effective_weight_factor(layer: AnalogLayerBase) -> Tensor:
    """``s * gamma`` of every weight, in the native shape of ``layer.weight``."""
    m = layer.mapping
    scale = layer.mapping_scales * layer.out_scales.detach().expand(m.n_stacked, m.out_features)
    return m.expand_to_weights(scale).reshape(layer.weight.shape)


def weight_space_updates(
    optimizer: torch.optim.Optimizer, model: nn.Module
) -> tuple[RemovableHandle, RemovableHandle]:
    """Make every step of ``optimizer`` act on the effective weights of the analog layers.

    An analog layer trains normalised weights ``W~``; the weights it computes with are
    ``W = s * gamma * W~`` (mapping scales times output scales, per column). A plain optimiser
    step on ``W~`` with the gradient ``dL/dW~ = s * gamma * dL/dW`` moves ``W`` by
    ``-lr (s gamma)^2 dL/dW`` under SGD: after remapping, the learning rate would differ per
    column by the square of the scale. These hooks run every step on ``W`` instead: before the
    step each layer's parameter holds ``W`` and its gradient ``dL/dW``; after it the parameter
    is divided back. The step is then exactly that of plain training of ``W`` (SGD moves it by
    ``-lr dL/dW``; momenta, Adam's moments and weight decay live in ``W`` units and stay valid
    across remaps). Parameters without a gradient are left alone.

    :func:`analoglib.training.fit` registers the hooks by itself; call this with your own
    training loop::

        handles = al.training.weight_space_updates(optimizer, model)
        ...  # loss.backward(); optimizer.step(); al.training.post_update_step(model)
        for handle in handles:
            handle.remove()

    Args:
        optimizer: The optimiser over the model's parameters.
        model: A converted model (or a ``DistributedDataParallel`` wrapping one).

    Returns:
        The handles of the step pre-hook and post-hook (``.remove()`` them to stop).

    References:
        ``docs/model.md#hwa-mechanics``, ``docs/aihwkit.md#differences``.
    """
    layers = [layer for layer in analog_layers(model) if layer.weight.requires_grad]
    factors: list[tuple[AnalogLayerBase, Tensor]] = []

    def to_weight_space() -> None:
        factors.clear()
        with torch.no_grad():
            for layer in layers:
                grad = layer.weight.grad
                if grad is None:
                    continue
                factor = _effective_weight_factor(layer)
                layer.weight.mul_(factor)
                grad.div_(factor)
                factors.append((layer, factor))

    def to_normalised() -> None:
        with torch.no_grad():
            for layer, factor in factors:
                layer.weight.div_(factor)
        factors.clear()

    return register_step_hooks(optimizer, to_weight_space, to_normalised)
