"""``AnalogSGD``: the optimiser of in-memory training.

A ``torch.optim.Optimizer`` over a model with trainable analog layers
(:mod:`analoglib.nn.trainable`): at ``step()`` every analog layer applies the pulsed update of
the (x, d) its backward passes queued, with its group's learning rate; every other parameter
(biases, digital layers) gets plain SGD. Learning-rate schedulers change the group rates as
usual, and :func:`analoglib.training.fit` accepts the optimiser.

References:
    ``docs/training.md#analogsgd``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from analoglib.nn.trainable import AnalogHandle, AnalogTrainLayer

__all__ = ["AnalogSGD"]


class AnalogSGD(torch.optim.Optimizer):
    """SGD whose analog layers update by pulses (aihwkit's ``AnalogSGD``).

    Args:
        params: The model (recommended), or its parameters followed by
            :meth:`regroup_param_groups` with the model.
        lr: Learning rate, >= 0.
        momentum: Momentum of the digital parameters (analog layers have none).
        weight_decay: Weight decay of the digital parameters.

    Raises:
        ValueError: For a negative ``lr`` or momentum.
    """

    def __init__(
        self,
        params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr = {lr!r} is not allowed: expected a number >= 0.")
        if momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"momentum = {momentum!r}, weight_decay = {weight_decay!r} are not allowed: "
                "expected numbers >= 0."
            )
        model = params if isinstance(params, nn.Module) else None
        if model is not None:
            params = model.parameters()
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, defaults)  # type: ignore[arg-type]
        self._layers: dict[int, AnalogTrainLayer] = {}
        if model is not None:
            self.regroup_param_groups(model)

    def regroup_param_groups(self, model: nn.Module) -> None:
        """Find the analog layers of ``model`` behind the handles in the parameter groups."""
        by_handle = {
            id(m.analog_handle): m for m in model.modules() if isinstance(m, AnalogTrainLayer)
        }
        for group in self.param_groups:
            for p in group["params"]:
                if isinstance(p, AnalogHandle) and id(p) in by_handle:
                    layer = by_handle[id(p)]
                    self._layers[id(p)] = layer
                    layer.attach(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply the analog updates and one SGD step of the digital parameters."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if isinstance(p, AnalogHandle):
                    layer = self._layers.get(id(p))
                    if layer is None:
                        raise ValueError(
                            "an analog layer's handle is not attached: build the optimiser as "
                            "AnalogSGD(model, lr=...) or call regroup_param_groups(model)."
                        )
                    layer.apply_update(lr)
                    continue
                if p.grad is None:
                    continue
                grad = p.grad
                if decay:
                    grad = grad.add(p, alpha=decay)
                if momentum:
                    buffer = self.state[p].get("momentum_buffer")
                    if buffer is None:
                        buffer = self.state[p]["momentum_buffer"] = grad.clone()
                    else:
                        buffer.mul_(momentum).add_(grad)
                    grad = buffer
                p.add_(grad, alpha=-lr)
        return loss
