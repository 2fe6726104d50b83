"""Cached training of a workload: its floating-point baseline and its HWA retraining.

Both trainings run once and are cached under ``data/cache/`` (``fp/<name>/`` and
``hwa/<name>/``), keyed by every parameter that determines the weights; later calls reload
the checkpoint. HWA training also saves its progress after every epoch, so an interrupted run
resumes without losing finished epochs and gives the uninterrupted result bit for bit.

References:
    Rasch et al. 2023; ``docs/model.md#hwa-training``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analoglib.cache import atomic_save, json_normalized
from analoglib.config import PCMConfig
from analoglib.inference import set_forward_seed
from analoglib.nn.convert import analog_layers, convert_to_analog
from analoglib.training.hwa import (
    HWARecipe,
    ModifierRamp,
    distillation_batch_loss,
    post_update_step,
    set_modifier_strength,
)
from analoglib.training.loops import fit, make_optimizer
from analoglib.utils import derive_seed
from analoglib.workloads.base import Workload, cache_path, eval_parameters, training_parameters

__all__ = ["cached_metrics", "hwa_cache_path", "train_fp", "train_hwa"]

log = logging.getLogger(__name__)


def train_fp(workload: Workload, retrain: bool = False, progress: bool = True) -> nn.Module:
    """Train the FP baseline of ``workload`` once and cache it; later calls reload it.

    The checkpoint (state dict plus the parameters, recipe, loss history and FP metrics) is
    written atomically to :func:`cache_path`. A changed parameter gives a different path, so a
    stale checkpoint is never reused.

    Args:
        workload: From :func:`load_workload`; its ``model`` is trained in place.
        retrain: Train even if a cached checkpoint exists (and overwrite it).
        progress: Show progress bars.

    Returns:
        ``workload.model``, trained, in ``eval()`` mode.
    """
    path = cache_path(workload)
    if path.exists() and not retrain:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("parameters") != json_normalized(training_parameters(workload)):
            raise RuntimeError(f"{path}: cached parameters do not match; delete the file.")
        workload.model.load_state_dict(state["model"])
        log.info("%s: loaded the FP checkpoint %s", workload.name, path)
        return workload.model.eval()
    recipe = workload.recipe
    history = fit(
        workload.model,
        workload.train_loader,
        epochs=recipe.epochs,
        lr=recipe.lr,
        seed=workload.parameters["seed"],
        optimizer=recipe.optimizer,
        weight_decay=recipe.weight_decay,
        progress=progress,
        batch_loss=workload.batch_loss,
        max_steps=recipe.max_steps,
        grad_clip=recipe.grad_clip,
        lr_decay=recipe.lr_decay,
        schedule=recipe.lr_schedule,
    )
    workload.model.eval()
    with torch.no_grad():
        metrics = workload.evaluate(workload.model)
    atomic_save(
        {
            "model": copy.deepcopy(workload.model.state_dict()),
            "parameters": json_normalized(training_parameters(workload)),
            "eval_parameters": eval_parameters(workload),
            "recipe": json_normalized(recipe.__dict__),
            "loss_history": history,
            "metrics": metrics,
        },
        path,
    )
    log.info("%s: trained and cached %s (%s)", workload.name, path, metrics)
    return workload.model


def cached_metrics(workload: Workload) -> dict[str, float] | None:
    """FP metrics stored with the cached checkpoint.

    None if it is not cached yet, or if it was evaluated on another evaluation subset than
    ``workload`` asks for (then evaluate the loaded model instead).
    """
    path = cache_path(workload)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("eval_parameters") != eval_parameters(workload):
        return None
    metrics: dict[str, float] = state["metrics"]
    return metrics


def hwa_cache_path(workload: Workload, config: PCMConfig, recipe: HWARecipe) -> Path:
    """``data/cache/hwa/<name>/<hash>.pt``, keyed by the workload, the config and the recipe."""
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
    workload: Workload,
    config: PCMConfig,
    recipe: HWARecipe,
    retrain: bool = False,
    progress: bool = True,
) -> nn.Module:
    """HWA-retrain the FP model of a workload once and cache it; later calls reload it.

    Starts from the cached FP model (:func:`train_fp`, trained first if
    needed), converts it with ``config`` and trains it with the workload's ``batch_loss``
    (optionally mixed with distillation from the FP model) through
    :func:`~analoglib.training.fit`, with :func:`~analoglib.training.post_update_step` and the
    :class:`~analoglib.training.ModifierRamp`
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
        recipe: The :class:`~analoglib.training.HWARecipe`.
        retrain: Train from the FP model even if a checkpoint or a progress file exists.
        progress: Show progress bars.

    Returns:
        The HWA-trained analog model in ``eval()`` mode (not programmed).

    References:
        Rasch et al. 2023; ``docs/model.md#hwa-training``.
    """
    if not isinstance(config, PCMConfig):
        raise ValueError(f"config = {config!r} is not allowed: expected a PCMConfig.")
    if not isinstance(recipe, HWARecipe):
        raise ValueError(f"recipe = {recipe!r} is not allowed: expected an HWARecipe.")
    fp_model = train_fp(workload, progress=progress)
    # Embeddings stay digital by design, as in the papers (docs/model.md#recipe-resnet-lstm).
    model = convert_to_analog(fp_model, config, on_unsupported="ignore")
    path = hwa_cache_path(workload, config, recipe)
    record = {
        "parameters": json_normalized(training_parameters(workload)),
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
            schedule=recipe.lr_schedule,
            start_epoch=epoch,
            total_epochs=recipe.epochs,
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
