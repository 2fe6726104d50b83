"""Hardware-aware (HWA) training: weight noise, clipping, remapping, ramp, distillation.

HWA training trains a converted model with the full standard forward model active (DAC/ADC
quantisation, IR drop, read and output noise; ideal backward), learned per-tile input ranges
(initialised from data over the first ``init_from_data`` batches, then trained) and learned
per-column output scales. The analog layers do all of that in ``train()`` mode by themselves,
together with the weight-noise modifier of ``config.modifier`` (one draw per mini-batch from
the layer's own generator). This module adds what happens between the steps:

* :func:`post_update_step` after every optimiser step: clip the normalised weights
  (``config.clip``), then remap them per column (``config.remap``) with the factor moved into
  the digital scales, so the layer computes the same function. It works with any plain
  ``torch.optim`` optimiser and with :func:`analoglib.training.fit` (``after_step``).
* :class:`ModifierRamp`: the modifier strength rises linearly from 0 to ``std_dev`` over a
  number of optimiser steps (a callback of the training loop; :func:`set_modifier_strength`
  sets it directly).
* :func:`distillation_batch_loss`: optional knowledge distillation from the FP model.
* :func:`train_hwa`: the whole recipe on a workload, with a per-epoch progress checkpoint (an
  interrupted run resumes without losing finished epochs) and the final model cached like the
  FP checkpoints.

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
    Rasch et al. 2023; ``aimc-model.md`` sections 8, 9, 10 and 12.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from analoglib.config import PCMConfig
from analoglib.inference import evaluate, set_forward_seed
from analoglib.nn.base import AnalogLayerBase
from analoglib.nn.convert import analog_layers, convert_to_analog
from analoglib.training.loops import OPTIMIZERS, fit, make_optimizer
from analoglib.utils import derive_seed

__all__ = [
    "HWA_PROFILES",
    "PUBLISHED_RASCH_2023",
    "HWARecipe",
    "ModifierRamp",
    "clip_weights",
    "compare_with_published",
    "distillation_batch_loss",
    "evaluate_variants",
    "hwa_cache_path",
    "hwa_recipe",
    "normalized_accuracy_table",
    "post_update_step",
    "remap_weights",
    "set_modifier_strength",
    "summary_metrics",
    "train_hwa",
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
        ``aimc-model.md`` section 9 (clip types).
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
    factor 1.

    References:
        ``aimc-model.md`` section 9 (remap types).
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
    layer.mapping_scales.mul_(factor)


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

    Use it with any plain ``torch.optim`` optimiser::

        loss.backward()
        optimizer.step()
        al.training.post_update_step(model)

    or as ``fit(..., after_step=al.training.post_update_step)``. Under
    ``torch.distributed`` it also averages the input ranges over the ranks while they are
    initialised from data (see the module docstring).

    Args:
        model: A converted model (or a ``DistributedDataParallel`` wrapping one).

    References:
        ``aimc-model.md`` section 10.1 (order: clip, remap; the modifier draws at the next
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
        ``aimc-model.md`` section 10.2 (noise ramped linearly from 0 over the first epochs).
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
        Hinton, Vinyals and Dean 2015; ``aimc-model.md`` section 10.6 (distillation in
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
class HWARecipe:
    """How a workload's FP model is retrained hardware-aware (see :func:`train_hwa`).

    Attributes:
        epochs: Passes over the training loader (each capped at ``max_steps``).
        lr: Learning rate.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: L2 weight decay.
        max_steps: Optimiser steps per epoch at most (0: the whole loader).
        grad_clip: Gradient-norm clip (0: none).
        lr_decay: Learning-rate factor per epoch.
        ramp_steps: Optimiser steps over which the weight-noise strength rises linearly from 0
            (0: full strength from the start).
        distill_weight: Share of the distillation loss from the FP model (0: none).
        distill_temperature: Softmax temperature of the distillation.
    """

    epochs: int
    lr: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    max_steps: int = 0
    grad_clip: float = 0.0
    lr_decay: float = 1.0
    ramp_steps: int = 0
    distill_weight: float = 0.0
    distill_temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("epochs", "max_steps", "ramp_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 0.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer = {self.optimizer!r} is not allowed: expected one of "
                f"{', '.join(map(repr, OPTIMIZERS))}."
            )
        if not self.lr > 0:
            raise ValueError(f"lr = {self.lr!r} is not allowed: expected a learning rate > 0.")
        for name in ("weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} = {getattr(self, name)!r} is not allowed: expected >= 0.")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(
                f"lr_decay = {self.lr_decay!r} is not allowed: expected a factor in (0, 1]."
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


#: HWA recipe, weight noise and evaluation size of each workload and profile. ``recipe``: the
#: :class:`HWARecipe`; ``config``: config fields set on the standard preset
#: :func:`~analoglib.presets.standard_hwa_2023` (which clips at 1 and remaps channelwise):
#: PCM-like weight noise (and layer-gaussian clipping for the LSTM) as in ``aimc-model.md``
#: 10.2, additive noise 0.06 for the transformer as in 10.4; ``eval_batches``: evaluation
#: batches per evaluation in the study (0: all); ``calibration_batches``: training batches
#: that calibrate the input ranges of the direct-mapping baseline. The default profiles are sized
#: from timed steps for at most about 30 minutes per workload on two idle CPU cores (HWA
#: training plus 48 evaluations at n_reps = 3): CNN 150 analog steps of batch 128 (about 5 s
#: each) and 500 test images per evaluation; LSTM 600 steps (about 1 s) and 12 test
#: segments; MiniLM 200 steps (about 2.5 s) and 256 validation sentences.
HWA_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cnn": {
        "smoke": {
            "recipe": {"epochs": 2, "lr": 2e-3, "max_steps": 15, "ramp_steps": 10},
            "config": {"modifier": {"type": "pcm_noise", "std_dev": 3.0}},
            "eval_batches": 0,
            "calibration_batches": 4,
        },
        "default": {
            "recipe": {
                "epochs": 2,
                "lr": 5e-4,
                "max_steps": 75,
                "lr_decay": 0.5,
                "ramp_steps": 50,
                "distill_weight": 0.5,
            },
            "config": {"modifier": {"type": "pcm_noise", "std_dev": 3.0}},
            "eval_batches": 1,
            "calibration_batches": 8,
        },
        "paper": {
            "recipe": {
                "epochs": 600,
                "lr": 7.5e-3,
                "optimizer": "sgd",
                "weight_decay": 1e-3,
                "ramp_steps": 20 * 1000,
            },
            "config": {"modifier": {"type": "pcm_noise", "std_dev": 3.0}},
            "eval_batches": 0,
            "calibration_batches": 20,
        },
    },
    "rnn": {
        "smoke": {
            "recipe": {"epochs": 1, "lr": 5e-3, "max_steps": 6, "grad_clip": 1.0},
            "config": {
                "modifier": {"type": "pcm_noise", "std_dev": 5.0, "pdrop": 0.01},
                "clip": {"type": "layer_gaussian", "sigma": 2.5},
            },
            "eval_batches": 1,
            "calibration_batches": 4,
        },
        "default": {
            "recipe": {
                "epochs": 2,
                "lr": 0.3,
                "optimizer": "sgd",
                "max_steps": 300,
                "grad_clip": 0.25,
                "lr_decay": 0.5,
                "ramp_steps": 200,
            },
            "config": {
                "modifier": {"type": "pcm_noise", "std_dev": 5.0, "pdrop": 0.01},
                "clip": {"type": "layer_gaussian", "sigma": 2.5},
            },
            "eval_batches": 12,
            "calibration_batches": 8,
        },
        "paper": {
            "recipe": {
                "epochs": 60,
                "lr": 0.01,
                "optimizer": "sgd",
                "weight_decay": 1e-5,
                "grad_clip": 10.0,
            },
            "config": {
                "modifier": {"type": "pcm_noise", "std_dev": 5.0, "pdrop": 0.01},
                "clip": {"type": "layer_gaussian", "sigma": 2.5},
            },
            "eval_batches": 0,
            "calibration_batches": 20,
        },
    },
    "transformer": {
        "smoke": {
            "recipe": {"epochs": 1, "lr": 5e-4, "max_steps": 6, "grad_clip": 1.0},
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 1,
            "calibration_batches": 4,
        },
        "default": {
            "recipe": {
                "epochs": 1,
                "lr": 2e-5,
                "max_steps": 200,
                "grad_clip": 1.0,
                "ramp_steps": 60,
                "distill_weight": 0.5,
            },
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 4,
            "calibration_batches": 8,
        },
        "paper": {
            "recipe": {"epochs": 20, "lr": 5e-5, "grad_clip": 1.0},
            "config": {"modifier": {"type": "add_normal", "std_dev": 0.06}},
            "eval_batches": 0,
            "calibration_batches": 20,
        },
    },
}


def hwa_recipe(
    workload: str, profile: str, **overrides: Any
) -> tuple[HWARecipe, PCMConfig, dict[str, int]]:
    """The HWA recipe and training config of a workload and profile (:data:`HWA_PROFILES`).

    Args:
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"``.
        profile: ``"smoke"``, ``"default"`` or ``"paper"``.
        **overrides: :class:`HWARecipe` fields to change.

    Returns:
        ``(recipe, config, sizes)``: the config is the standard preset with the profile's
        modifier (and clip) fields; ``sizes`` holds ``eval_batches`` and
        ``calibration_batches``.

    Raises:
        ValueError: For an unknown workload, profile or recipe field.
    """
    from analoglib.presets import standard_hwa_2023

    if workload not in HWA_PROFILES:
        raise ValueError(
            f"workload = {workload!r} is not allowed: expected one of "
            f"{', '.join(map(repr, HWA_PROFILES))}."
        )
    profiles = HWA_PROFILES[workload]
    if profile not in profiles:
        raise ValueError(
            f"profile = {profile!r} is not allowed: expected one of "
            f"{', '.join(map(repr, profiles))}."
        )
    entry = profiles[profile]
    fields = {f.name for f in dataclasses.fields(HWARecipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"HWARecipe has no field {', '.join(map(repr, unknown))}; its fields are: "
            f"{', '.join(sorted(fields))}."
        )
    recipe = HWARecipe(**{**entry["recipe"], **overrides})
    config = standard_hwa_2023()
    for group, values in entry["config"].items():
        for name, value in values.items():
            setattr(getattr(config, group), name, value)
    sizes = {k: int(entry[k]) for k in ("eval_batches", "calibration_batches")}
    return recipe, config, sizes


# -- the HWA training driver -------------------------------------------------------------------
def hwa_cache_path(workload: Any, config: PCMConfig, recipe: HWARecipe) -> Path:
    """``data/cache/hwa/<name>/<hash>.pt``, keyed by the workload, the config and the recipe."""
    from analoglib.workloads.base import cache_path

    return cache_path(
        workload, kind="hwa", config=config.to_dict(), recipe=dataclasses.asdict(recipe)
    )


def _progress_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.progress.pt")


def _generator_states(model: nn.Module, loader: Any) -> dict[str, Any]:
    layers = analog_layers(model)
    generator = getattr(loader, "generator", None)
    return {
        "layers": [layer._forward_generator(layer.weight.device).get_state() for layer in layers],
        "loader": generator.get_state() if isinstance(generator, torch.Generator) else None,
    }


def _restore_generator_states(model: nn.Module, loader: Any, states: dict[str, Any]) -> None:
    for layer, state in zip(analog_layers(model), states["layers"], strict=True):
        layer._forward_generator(layer.weight.device).set_state(state)
    generator = getattr(loader, "generator", None)
    if states["loader"] is not None and isinstance(generator, torch.Generator):
        generator.set_state(states["loader"])


def train_hwa(
    workload: Any,
    config: PCMConfig,
    recipe: HWARecipe,
    retrain: bool = False,
    progress: bool = True,
) -> nn.Module:
    """HWA-retrain the FP model of a workload once and cache it; later calls reload it.

    Starts from the cached FP model (:func:`analoglib.workloads.train_fp`, trained first if
    needed), converts it with ``config`` and trains it with the workload's ``batch_loss``
    (optionally mixed with distillation from the FP model) through
    :func:`analoglib.training.fit`, with :func:`post_update_step` and the :class:`ModifierRamp`
    after every step. After every epoch the model, optimiser, ramp and generator states go to
    ``<hash>.progress.pt`` (written atomically); a later call resumes from it. The finished
    model is written atomically to :func:`hwa_cache_path` and the progress file removed.
    The loader's ``generator`` and the layers' forward-noise streams are reseeded from the
    workload seed at the start, so the result does not depend on what ran before. Resuming
    reproduces the uninterrupted run bit for bit when the loader's only randomness is its
    ``generator`` (true for the three workloads without data augmentation).

    Args:
        workload: From :func:`analoglib.workloads.load_workload`.
        config: Crossbar configuration of training (modifier, clip, remap, input ranges).
        recipe: The :class:`HWARecipe`.
        retrain: Train from the FP model even if a checkpoint or a progress file exists.
        progress: Show progress bars.

    Returns:
        The HWA-trained analog model in ``eval()`` mode (not programmed).

    References:
        Rasch et al. 2023; ``aimc-model.md`` section 10.
    """
    from analoglib.workloads.base import _jsonable, atomic_save, train_fp, training_parameters

    if not isinstance(config, PCMConfig):
        raise ValueError(f"config = {config!r} is not allowed: expected a PCMConfig.")
    if not isinstance(recipe, HWARecipe):
        raise ValueError(f"recipe = {recipe!r} is not allowed: expected an HWARecipe.")
    fp_model = train_fp(workload, progress=progress)
    model = convert_to_analog(fp_model, config)
    path = hwa_cache_path(workload, config, recipe)
    record = {
        "parameters": _jsonable(training_parameters(workload)),
        "config": config.to_dict(),
        "recipe": dataclasses.asdict(recipe),
    }
    if path.exists() and not retrain:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if any(state.get(key) != value for key, value in record.items()):
            raise RuntimeError(f"{path}: cached parameters do not match; delete the file.")
        model.load_state_dict(state["model"])
        log.info("%s: loaded the HWA checkpoint %s", workload.name, path)
        return model.eval()

    device = next(fp_model.parameters()).device
    model.to(device)
    optimizer = make_optimizer(
        recipe.optimizer,
        [p for p in model.parameters() if p.requires_grad],
        recipe.lr,
        recipe.weight_decay,
    )
    ramp = ModifierRamp(recipe.ramp_steps)
    history: list[float] = []
    start_epoch = 0
    # Fresh streams: the shuffling order and the forward noise must not depend on whether the
    # FP model was just trained (which consumed the loader's generator) or loaded.
    seed = workload.parameters["seed"]
    generator = getattr(workload.train_loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(derive_seed(seed, "hwa_shuffle"))
    set_forward_seed(model, derive_seed(seed, "hwa_forward"))
    progress_path = _progress_path(path)
    if progress_path.exists() and not retrain:
        state = torch.load(progress_path, map_location=device, weights_only=False)
        if any(state.get(key) != value for key, value in record.items()):
            raise RuntimeError(f"{progress_path}: parameters do not match; delete the file.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ramp.step = state["ramp_step"]
        history = list(state["loss_history"])
        start_epoch = state["epoch"]
        _restore_generator_states(model, workload.train_loader, state["generators"])
        log.info("%s: resuming HWA training after epoch %d", workload.name, start_epoch)
    ramp.start(model)

    batch_loss = workload.batch_loss
    if recipe.distill_weight > 0:
        teacher = copy.deepcopy(fp_model).to(device)
        batch_loss = distillation_batch_loss(
            batch_loss, teacher, recipe.distill_weight, recipe.distill_temperature
        )

    def after_step(trained: nn.Module) -> None:
        post_update_step(trained)
        ramp(trained)

    for epoch in range(start_epoch, recipe.epochs):
        history += fit(
            model,
            workload.train_loader,
            epochs=1,
            lr=recipe.lr,
            seed=derive_seed(seed, "hwa", epoch),
            optimizer=optimizer,
            progress=progress,
            after_step=after_step,
            batch_loss=batch_loss,
            max_steps=recipe.max_steps,
            grad_clip=recipe.grad_clip,
            lr_decay=recipe.lr_decay,
        )
        atomic_save(
            {
                **record,
                "model": copy.deepcopy(model.state_dict()),
                "optimizer": copy.deepcopy(optimizer.state_dict()),
                "ramp_step": ramp.step,
                "loss_history": history,
                "epoch": epoch + 1,
                "generators": _generator_states(model, workload.train_loader),
            },
            progress_path,
        )
    set_modifier_strength(model, 1.0)
    model.eval()
    atomic_save(
        {**record, "model": copy.deepcopy(model.state_dict()), "loss_history": history}, path
    )
    progress_path.unlink(missing_ok=True)
    log.info("%s: HWA-trained and cached %s", workload.name, path)
    return model


# -- summaries ---------------------------------------------------------------------------------
#: Published A* of Rasch et al. 2023 (and the follow-up Wu 2026 for ResNet-32) per family, in
#: percent (``aimc-model.md`` section 13.1); None where no number is published.
PUBLISHED_RASCH_2023: dict[str, dict[str, Any]] = {
    "cnn": {
        "model": "ResNet-32 / CIFAR-10 (Wu 2026: FP 94.1 % -> HWA 93.3 %)",
        "a_star_1h": 99.0,
        "a_star_1y": 97.0,
    },
    "rnn": {
        "model": "2-layer LSTM / PTB (A*_1h 99.6-99.7 %)",
        "a_star_1h": 99.6,
        "a_star_1y": 99.1,
    },
    "transformer": {"model": "BERT-base / GLUE", "a_star_1h": 99.8, "a_star_1y": None},
}


def normalized_accuracy_table(
    results: pd.DataFrame,
    error_fp: float,
    chance_error: float,
    times_s: Sequence[float] = (3600.0, 31536000.0),
    variant: str = "variant",
) -> pd.DataFrame:
    """A* (%) per variant, drift compensation and time: mean and std over repetitions.

    A*_t = 1 - (error_t - error_FP) / (error_chance - error_FP) of every repetition
    (``aimc-model.md`` section 12), then mean and sample std.

    Args:
        results: Tidy table of :func:`analoglib.evaluate` with an ``error`` column and a
            ``variant`` column.
        error_fp: Error of the FP model.
        chance_error: Error at chance level.
        times_s: Times (s) to keep.
        variant: Name of the variant column.

    Returns:
        Rows (variant, drift_compensation, t_inference_s) with columns ``a_star_mean`` and
        ``a_star_std`` (percent).

    Raises:
        ValueError: If a column is missing or ``chance_error == error_fp``.
    """
    missing = [
        c for c in ("error", "t_inference_s", "drift_compensation", variant) if c not in results
    ]
    if missing:
        raise ValueError(f"results lacks the column(s) {', '.join(missing)}.")
    if chance_error == error_fp:
        raise ValueError(f"chance_error = {chance_error!r} equals error_fp: A* is undefined.")
    rows = results[results["t_inference_s"].isin([float(t) for t in times_s])].copy()
    rows["a_star"] = 100.0 * (1.0 - (rows["error"] - error_fp) / (chance_error - error_fp))
    table = rows.groupby([variant, "drift_compensation", "t_inference_s"], sort=False)["a_star"]
    return table.agg(a_star_mean="mean", a_star_std="std")


def evaluate_variants(
    models: dict[str, nn.Module],
    eval_fn: Callable[[nn.Module], Any],
    t_inferences: Sequence[float],
    n_reps: int,
    seed: int,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`analoglib.evaluate` of several analog models, with and without drift compensation.

    Every model is programmed ``n_reps`` times (seeds ``seed + r``, the same for every model)
    and evaluated at each time, once with global drift compensation and once without.

    Args:
        models: Variant name -> converted model.
        eval_fn: Metric function (e.g. ``workload.evaluate``).
        t_inferences: Times after programming (s).
        n_reps: Programming repetitions.
        seed: Base seed.
        progress: Show progress bars.

    Returns:
        The tidy tables concatenated, with a ``variant`` column.
    """
    tables = []
    for name, model in models.items():
        for gdc in (True, False):
            table = evaluate(
                model,
                eval_fn,
                t_inferences,
                n_reps,
                seed,
                drift_compensation=gdc,
                progress=progress,
            )
            tables.append(table.assign(variant=name))
    return pd.concat(tables, ignore_index=True)


def compare_with_published(a_star: pd.DataFrame, workload: str, description: str) -> pd.DataFrame:
    """A*_1h and A*_1y (with drift compensation) of each variant beside the published values.

    Args:
        a_star: Output of :func:`normalized_accuracy_table` (times 3600 s and 31536000 s).
        workload: ``"cnn"``, ``"rnn"`` or ``"transformer"`` (the family's published row).
        description: What our run is (the offline stand-in), for the ``model`` column.

    Returns:
        One row per variant (ours, ``mean +- std`` in %) and one for the published HWA result.

    References:
        ``aimc-model.md`` section 13.1.
    """
    published = PUBLISHED_RASCH_2023[workload]
    rows = []
    with_gdc = a_star.xs(True, level="drift_compensation")
    for name in pd.unique(with_gdc.index.get_level_values(0)):
        row: dict[str, Any] = {"variant": str(name), "model": description}
        for label, t in (("A*_1h (%)", 3600.0), ("A*_1y (%)", 31536000.0)):
            if (name, t) in with_gdc.index:
                mean, std = with_gdc.loc[(name, t), ["a_star_mean", "a_star_std"]]
                row[label] = f"{mean:.1f} +- {0.0 if pd.isna(std) else std:.1f}"
            else:
                row[label] = "-"
        rows.append(row)

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows.append(
        {
            "variant": "HWA, published (Rasch et al. 2023)",
            "model": published["model"],
            "A*_1h (%)": fmt(published["a_star_1h"]),
            "A*_1y (%)": fmt(published["a_star_1y"]),
        }
    )
    return pd.DataFrame(rows).set_index("variant")


def summary_metrics(results: pd.DataFrame, a_star: pd.DataFrame, metric: str) -> dict[str, Any]:
    """Headline numbers of an HWA study for the results JSON.

    Args:
        results: Output of :func:`evaluate_variants`.
        a_star: Output of :func:`normalized_accuracy_table`.
        metric: The task metric column.

    Returns:
        ``t_inference_s`` and, per variant and drift compensation (keys like
        ``hwa_gdc``, ``direct_mapping_no_gdc``), the mean and std of ``metric`` at each time
        and the mean A* (%) at the times of ``a_star`` (``a_star_3600`` ...).
    """
    out: dict[str, Any] = {"t_inference_s": sorted(results["t_inference_s"].unique().tolist())}
    stats = results.groupby(["variant", "drift_compensation", "t_inference_s"], sort=False)
    table = stats[metric].agg(["mean", "std"]).sort_index()
    for (name, gdc), part in table.groupby(level=[0, 1], sort=False):
        key = "_".join(str(name).lower().replace("-", " ").split()) + ("_gdc" if gdc else "_no_gdc")
        entry: dict[str, Any] = {
            "mean": part["mean"].tolist(),
            "std": part["std"].fillna(0.0).tolist(),
        }
        if (name, gdc) in a_star.droplevel(2).index:
            for t, value in a_star.loc[(name, gdc), "a_star_mean"].items():
                entry[f"a_star_{int(t)}"] = float(value)
        out[key] = entry
    return out
