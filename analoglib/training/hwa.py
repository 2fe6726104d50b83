"""Hardware-aware (HWA) training: weight noise, clipping, remapping, ramp, distillation.

HWA training trains a converted model with the full standard forward model active (DAC/ADC
quantisation, IR drop, read and output noise; ideal backward), learned per-tile input ranges
(initialised from data over the first ``init_from_data`` batches, then trained) and learned
per-column output scales. The analog layers do all of that in ``train()`` mode by themselves,
together with the weight-noise modifier of ``config.modifier`` (one draw per optimiser step
from the layer's own generator). Optimiser steps act on the effective weights
(:func:`~analoglib.training.weight_space_updates`, registered by ``fit``). This module adds
what happens between the steps:

* :func:`post_update_step` after every optimiser step: clip the normalised weights
  (``config.clip``), then remap them per column (``config.remap``) with the factor moved into
  the digital scales and the learned output scales folded into them, so the layer computes
  the same function. It works with any plain
  ``torch.optim`` optimiser and with :func:`analoglib.training.fit` (``after_step``).
* :class:`ModifierRamp`: the modifier strength rises linearly from 0 to ``std_dev`` over a
  number of optimiser steps (a callback of the training loop; :func:`set_modifier_strength`
  sets it directly).
* :func:`distillation_batch_loss`: optional knowledge distillation from the FP model.
* :class:`HWARecipe`: the arguments of an HWA training run.

The whole recipe on a workload, cached and resumable, is :func:`analoglib.workloads.train_hwa`.

Distributed data parallel: the layers work inside ``torch.nn.parallel.DistributedDataParallel``
(gradients of weights, input ranges and output scales are averaged like any other). Two things
differ from one process on the global batch: the data initialisation of the input ranges uses
the statistics of each rank's share of the batch (:func:`post_update_step` averages the ranges
over the ranks during that phase, so the ranks stay identical, but the average of per-rank
standard deviations is not the standard deviation of the global batch), and the input-range
``decay`` term depends on the per-rank fraction of unclipped inputs. Forward noise draws
(read and output noise) have the shape of the local batch, so their values differ from a
single-process run; the weight-modifier draws have the weight's shape and are the same on
every rank. With the noise of the forward path and ``decay`` off and the ranges initialised
before training, DDP reproduces the single-process parameters (tested).

References:
    Rasch et al. 2023; ``docs/model.md#periphery``, ``docs/model.md#hwa-noise``,
    ``docs/model.md#hwa-training``, ``docs/model.md#metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from analoglib._deprecation import moved_names
from analoglib.nn.base import AnalogLayerBase
from analoglib.nn.convert import analog_layers
from analoglib.training.loops import TrainRecipe

__all__ = [
    "MOVED_NAMES",
    "HWARecipe",
    "ModifierRamp",
    "clip_weights",
    "distillation_batch_loss",
    "post_update_step",
    "remap_weights",
    "set_modifier_strength",
]

log = logging.getLogger(__name__)

Batch = Any


# -- after each optimiser step ----------------------------------------------------------------
def _tile_mask(layer: AnalogLayerBase) -> Tensor:
    """``(tiles, 1, rows)`` float mask of the rows that hold weights."""
    return layer._row_mask.to(layer.weight.dtype)


@torch.no_grad()
def clip_weights(layer: AnalogLayerBase) -> None:
    """Clip the normalised weights of one layer in place (``layer.config.clip``).

    ``fixed_value``: W~ <- clip(W~, -v, v). ``layer_gaussian``: per stacked tile,
    W~ <- clip(W~, -b, b) with b = sigma * std(W~ of the tile) (unbiased std over the weights
    the tile holds), capped by ``fixed_value`` if that is > 0.

    References:
        ``docs/model.md#hwa-noise`` (clip types).
    """
    clip = layer.config.clip
    if clip.type == "none":
        return
    if clip.type == "fixed_value":
        layer.weight.clamp_(-clip.fixed_value, clip.fixed_value)
        return
    m = layer.mapping
    tiles = layer.reference_tiles()  # (tiles, out, rows), padded rows are 0
    mask = _tile_mask(layer)
    count = mask.sum(dim=(1, 2)) * m.out_features  # (tiles,)
    mean = tiles.sum(dim=(1, 2)) / count
    centred = (tiles - mean.view(-1, 1, 1)) * mask
    std = (centred.square().sum(dim=(1, 2)) / (count - 1).clamp(min=1)).sqrt()  # (tiles,)
    bound = clip.sigma * std
    if clip.fixed_value > 0:
        bound = bound.clamp(max=clip.fixed_value)
    bound_w = m.expand_to_weights(bound.view(-1, 1).expand(-1, m.out_features))
    weight = layer._matrices(layer.weight)  # (groups, out, in), a view of the parameter
    weight.copy_(torch.maximum(torch.minimum(weight, bound_w), -bound_w))


@torch.no_grad()
def remap_weights(layer: AnalogLayerBase) -> None:
    """Renormalise the weights of one layer and move the factor into ``mapping_scales``.

    ``channelwise_symmetric``: each tile column's abs-max becomes ``omega``
    (``mapping.weight_scaling_omega``, 1 in the standard model); ``layerwise_symmetric``: each
    tile's abs-max does. The scales ``s`` are multiplied by the same factors, so
    ``s * W~`` (and with an ideal forward the layer output) is unchanged. All-zero columns keep
    factor 1. The learned output scales ``gamma`` are then folded into ``s`` and reset to 1.

    References:
        ``docs/model.md#hwa-noise`` (remap types).
    """
    kind = layer.config.remap.type
    if kind == "none":
        return
    m = layer.mapping
    magnitude = layer.reference_tiles().abs()  # (tiles, out, rows)
    if kind == "channelwise_symmetric":
        top = magnitude.amax(dim=2)  # (tiles, out)
    else:
        top = magnitude.amax(dim=(1, 2)).view(-1, 1).expand(-1, m.out_features)
    factor = top / layer.config.mapping.weight_scaling_omega
    factor = torch.where(factor > 0, factor, torch.ones_like(factor))
    weight = layer._matrices(layer.weight)  # (groups, out, in)
    weight.div_(m.expand_to_weights(factor))
    # The learned output scales are folded into the mapping and restart at 1 (as aihwkit does
    # after every remap), so s * gamma * W~ is unchanged.
    gamma = layer.out_scales.expand(m.n_stacked, m.out_features)
    layer.mapping_scales.mul_(factor * gamma)
    layer.out_scales.fill_(1.0)


@torch.no_grad()
def _sync_input_ranges(layer: AnalogLayerBase) -> None:
    """Average the input ranges over the ranks while they are initialised from data."""
    ranges = layer.config.pre_post.input_range
    if not ranges.enable or int(layer.input_range_batches) > ranges.init_from_data:
        return
    if int(layer.input_range_batches) == 0:
        return
    dist.all_reduce(layer.input_range.data, op=dist.ReduceOp.SUM)
    layer.input_range.data.div_(dist.get_world_size())


def post_update_step(model: nn.Module) -> None:
    """What follows every optimiser step of HWA training: clip, then remap, every layer.

    Use it with any plain ``torch.optim`` optimiser, whose steps act on the effective
    weights once :func:`~analoglib.training.weight_space_updates` is registered::

        al.training.weight_space_updates(optimizer, model)  # once
        ...
        loss.backward()
        optimizer.step()
        al.training.post_update_step(model)

    or as ``fit(..., after_step=al.training.post_update_step)``. Under
    ``torch.distributed`` it also averages the input ranges over the ranks while they are
    initialised from data (see the module docstring).

    Args:
        model: A converted model (or a ``DistributedDataParallel`` wrapping one).

    References:
        ``docs/model.md#hwa-mechanics`` (order: clip, remap; the modifier draws at the next
        forward).
    """
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    for layer in analog_layers(model):
        clip_weights(layer)
        remap_weights(layer)
        if distributed:
            _sync_input_ranges(layer)


def set_modifier_strength(model: nn.Module, strength: float) -> None:
    """Scale the weight-modifier noise of every analog layer (``std_dev * strength``).

    Args:
        model: A converted model.
        strength: Factor >= 0 (1 is the configured ``std_dev``).

    Raises:
        ValueError: If ``strength`` is negative or not a number.
    """
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not strength >= 0:
        raise ValueError(f"strength = {strength!r} is not allowed: expected a number >= 0.")
    for layer in analog_layers(model):
        layer.modifier_strength = float(strength)


class ModifierRamp:
    """Linear ramp of the weight-modifier strength from 0 to 1 over ``steps`` optimiser steps.

    Call :meth:`start` before training (sets the strength of the current step) and the object
    itself after every optimiser step (``fit(..., after_step=...)``); step k trains with
    strength ``min(1, k / steps)``. ``steps = 0`` means full strength from the start.

    Args:
        steps: Length of the ramp in optimiser steps (epochs times steps per epoch for a ramp
            over epochs), >= 0.
        step: Steps already taken (to resume a run).

    References:
        ``docs/model.md#recipe-resnet-lstm`` (noise ramped linearly from 0 over the first epochs).
    """

    def __init__(self, steps: int, step: int = 0) -> None:
        for name, value in (("steps", steps), ("step", step)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 0.")
        self.steps = steps
        self.step = step

    @property
    def strength(self) -> float:
        """Strength of the current step, in [0, 1]."""
        return 1.0 if self.steps == 0 else min(1.0, self.step / self.steps)

    def start(self, model: nn.Module) -> None:
        """Set the strength of the current step on every analog layer."""
        set_modifier_strength(model, self.strength)

    def __call__(self, model: nn.Module) -> None:
        self.step += 1
        set_modifier_strength(model, self.strength)

    def __repr__(self) -> str:
        return f"ModifierRamp(steps={self.steps}, step={self.step}, strength={self.strength:g})"


# -- distillation ------------------------------------------------------------------------------
def _logits(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ValueError(
        f"model output of type {type(output).__name__} holds no logits (expected a tensor, a "
        "tuple starting with one, or an object with .logits)."
    )


def distillation_batch_loss(
    batch_loss: Callable[[nn.Module, Batch], tuple[Tensor, int]],
    teacher: nn.Module,
    weight: float,
    temperature: float = 1.0,
) -> Callable[[nn.Module, Batch], tuple[Tensor, int]]:
    """Mix a task loss with knowledge distillation from a teacher (the FP model).

    The returned ``batch_loss(model, batch)`` computes the task loss as ``batch_loss`` does,
    records the arguments and the output of the model's call (a forward hook), runs the
    teacher on the same arguments without gradients and returns
    ``(1 - weight) * task + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``,
    the KL divergence averaged over all predictions (samples, or tokens of a language model).

    Args:
        batch_loss: The workload's ``batch_loss(model, batch) -> (loss, n_samples)``.
        teacher: The FP model (same inputs, same logits shape), in ``eval()`` mode.
        weight: Share of the distillation term in [0, 1].
        temperature: Softmax temperature T > 0.

    Raises:
        ValueError: For ``weight`` outside [0, 1] or ``temperature <= 0``.

    References:
        Hinton, Vinyals and Dean 2015; ``docs/model.md#hwa-open-points`` (distillation in
        Rasch et al. 2023).
    """
    if not 0 <= weight <= 1:
        raise ValueError(f"weight = {weight!r} is not allowed: expected a share in [0, 1].")
    if not temperature > 0:
        raise ValueError(f"temperature = {temperature!r} is not allowed: expected T > 0.")
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    def loss_fn(model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        seen: dict[str, Any] = {}

        def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            seen.update(args=args, kwargs=kwargs, out=out)

        inner = getattr(model, "module", None)  # the module inside DDP
        target = inner if isinstance(inner, nn.Module) else model
        handle = target.register_forward_hook(hook, with_kwargs=True)
        try:
            task, n_samples = batch_loss(model, batch)
        finally:
            handle.remove()
        if weight == 0:
            return task, n_samples
        if "out" not in seen:
            raise RuntimeError("batch_loss did not call the model: nothing to distil.")
        with torch.no_grad():
            teacher_logits = _logits(teacher(*seen["args"], **seen["kwargs"]))
        student = _logits(seen["out"])
        classes = student.shape[-1]
        kl = F.kl_div(
            F.log_softmax(student.reshape(-1, classes) / temperature, dim=-1),
            F.log_softmax(teacher_logits.reshape(-1, classes).float() / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )  # mean over predictions
        return (1 - weight) * task + weight * temperature**2 * kl, n_samples

    return loss_fn


# -- recipes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HWARecipe(TrainRecipe):
    """How a model is retrained hardware-aware (see :func:`analoglib.workloads.train_hwa`).

    The fields of :class:`~analoglib.training.loops.TrainRecipe` (``epochs``, ``lr``,
    ``optimizer``, ``weight_decay``, ``max_steps``, ``grad_clip``, ``lr_decay``), plus:

    Attributes:
        ramp_steps: Optimiser steps over which the weight-noise strength rises linearly from 0
            (0: full strength from the start).
        distill_weight: Share of the distillation loss from the FP model (0: none).
        distill_temperature: Softmax temperature of the distillation.
    """

    ramp_steps: int = 0
    distill_weight: float = 0.0
    distill_temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            not isinstance(self.ramp_steps, int)
            or isinstance(self.ramp_steps, bool)
            or (self.ramp_steps < 0)
        ):
            raise ValueError(
                f"ramp_steps = {self.ramp_steps!r} is not allowed: expected an integer >= 0."
            )
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(
                f"distill_weight = {self.distill_weight!r} is not allowed: expected [0, 1]."
            )
        if not self.distill_temperature > 0:
            raise ValueError(
                f"distill_temperature = {self.distill_temperature!r} is not allowed: "
                "expected T > 0."
            )


_STUDY = "analoglib.studies.hwa_retraining"
#: Names that left this module (old name -> new module and name), for the deprecated aliases.
MOVED_NAMES: dict[str, tuple[str, str | None]] = {
    "HWA_PROFILES": (_STUDY, "HWA_PROFILES"),
    "PUBLISHED_RASCH_2023": (_STUDY, "PUBLISHED_RASCH_2023"),
    "compare_with_published": (_STUDY, "compare_with_published"),
    "evaluate_variants": (_STUDY, "evaluate_variants"),
    "hwa_recipe": (_STUDY, "hwa_recipe"),
    "normalized_accuracy_table": (_STUDY, "normalized_accuracy_table"),
    "summary_metrics": (_STUDY, "results_metrics"),
    "hwa_cache_path": ("analoglib.workloads", "hwa_cache_path"),
    "train_hwa": ("analoglib.workloads", "train_hwa"),
}
__getattr__ = moved_names(__name__, MOVED_NAMES)
