"""Generic training and evaluation loops for digital and analog models.

The loops only use the ``nn.Module`` interface, so a converted (analog) model trains with the
same :func:`fit` as its digital original; hardware-aware training adds its weight modifiers,
clipping and remapping through the model's configuration and the ``after_step`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from analoglib.training.weight_space import register_step_hooks, weight_space_updates
from analoglib.utils import model_device, progress_enabled

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "LRSchedule",
    "TrainRecipe",
    "accuracy",
    "classification_eval_fn",
    "fit",
    "make_optimizer",
]

#: Optimiser names accepted by :func:`fit` (``"adamw"``: Adam with decoupled weight decay).
OPTIMIZERS = ("adam", "adamw", "sgd")
#: Learning-rate schedules of :class:`LRSchedule`.
SCHEDULES = ("constant", "linear", "cosine", "step")
#: Momentum of the ``"sgd"`` optimiser.
SGD_MOMENTUM = 0.9

Batch = Any  # a (inputs, targets) pair or list, as a DataLoader yields it


#: Defaults of the schedule options of :func:`fit` and :class:`TrainRecipe` besides ``schedule``.
_SCHEDULE_DEFAULTS: dict[str, Any] = {
    "warmup_steps": 0,
    "warmup_factor": 0.0,
    "min_lr_ratio": 0.0,
    "step_epochs": 0,
    "step_milestones": (),
    "step_gamma": 0.1,
}
#: The options each schedule uses besides the warm-up (the others must keep their defaults).
_SCHEDULE_OPTIONS = {
    "constant": (),
    "linear": ("min_lr_ratio",),
    "cosine": ("min_lr_ratio",),
    "step": ("step_epochs", "step_milestones", "step_gamma"),
}


def _check_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 0.")


@dataclass(frozen=True)
class LRSchedule:
    """Learning-rate schedule of :func:`fit`: a factor on the optimiser's learning rate per step.

    Optimiser step k (0-based, counted over the whole run, also over several :func:`fit` calls
    with ``start_epoch``) runs at ``lr * factor(k)``, with n the steps of the whole run and
    w = ``warmup_steps``:

    * warm-up, while ``k < w``: ``(k + 1) / w`` (linear from lr / w up to lr at step w - 1),
      or the constant ``warmup_factor`` if it is > 0 (a constant warm-up as in He et al. 2016
      and the ResNet-32 HWA recipe of Rasch et al. 2023);
    * ``"constant"``: 1;
    * ``"linear"`` and ``"cosine"``: from 1 at step w down to ``min_lr_ratio`` at the end of
      the run, linearly or along half a cosine, ``m + (1 - m) (1 + cos(pi p)) / 2`` with
      ``p = (k - w) / (n - w)``. As in :class:`torch.optim.lr_scheduler.CosineAnnealingLR`
      (``T_max`` = n) and the Hugging Face schedules, p = 1 falls on step n, just after the
      run: the last step runs at ``m + (1 - m) (1 + cos(pi (n - 1 - w) / (n - w))) / 2``,
      a fraction of order ``1 / (n - w)^2`` above m, so no step is spent at a zero rate;
    * ``"step"``: ``step_gamma ** d``, with d the drops reached by the epoch of step k
      (``k // steps_per_epoch``, counted from the start of the run, warm-up included): one
      every ``step_epochs`` epochs (``epoch // step_epochs``, as PyTorch's ``StepLR``), or
      one at each of ``step_milestones`` (as ``MultiStepLR``).

    Attributes:
        kind: One of :data:`SCHEDULES` (named ``schedule`` in :func:`fit` and
            :class:`TrainRecipe`).
        warmup_steps: Optimiser steps of warm-up (0: none).
        warmup_factor: 0 for a linear warm-up; in (0, 1]: the constant factor of the warm-up.
        min_lr_ratio: Final factor of ``"linear"`` and ``"cosine"``, in [0, 1].
        step_epochs: ``"step"``: drop every that many epochs (0: use ``step_milestones``).
        step_milestones: ``"step"``: the epochs (increasing, > 0) from which the rate drops.
        step_gamma: ``"step"``: factor per drop, in (0, 1].

    Raises:
        ValueError: For an unknown kind, a value out of its range, a ``"step"`` schedule
            without ``step_epochs`` or ``step_milestones`` (or with both), a warm-up factor
            without warm-up steps, or an option that the kind does not use set to a value
            other than its default (it would be ignored).

    References:
        Rasch et al. 2023 (ResNet-32 warm-up and drops); ``docs/model.md#recipe-choices``.
    """

    kind: str = "constant"
    warmup_steps: int = 0
    warmup_factor: float = 0.0
    min_lr_ratio: float = 0.0
    step_epochs: int = 0
    step_milestones: tuple[int, ...] = ()
    step_gamma: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in SCHEDULES:
            raise ValueError(
                f"schedule = {self.kind!r} is not allowed: expected one of "
                f"{', '.join(map(repr, SCHEDULES))}."
            )
        _check_int("warmup_steps", self.warmup_steps)
        _check_int("step_epochs", self.step_epochs)
        if not 0 <= self.warmup_factor <= 1:
            raise ValueError(
                f"warmup_factor = {self.warmup_factor!r} is not allowed: expected 0 (linear "
                "warm-up) or a constant factor in (0, 1]."
            )
        if self.warmup_factor and not self.warmup_steps:
            raise ValueError(
                f"warmup_factor = {self.warmup_factor!r} is not allowed with warmup_steps = 0: "
                "give the warm-up length in optimiser steps."
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"min_lr_ratio = {self.min_lr_ratio!r} is not allowed: expected a ratio in [0, 1]."
            )
        if isinstance(self.step_milestones, (str, bytes)) or not isinstance(
            self.step_milestones, Iterable
        ):
            milestones: tuple[Any, ...] = (self.step_milestones,)
        else:
            milestones = tuple(self.step_milestones)
        positive = all(isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in milestones)
        if not positive or list(milestones) != sorted(set(milestones)):
            raise ValueError(
                f"step_milestones = {self.step_milestones!r} is not allowed: expected increasing "
                "epochs > 0."
            )
        object.__setattr__(self, "step_milestones", milestones)
        if not 0 < self.step_gamma <= 1:
            raise ValueError(
                f"step_gamma = {self.step_gamma!r} is not allowed: expected a factor in (0, 1]."
            )
        used = _SCHEDULE_OPTIONS[self.kind]
        for name, default in _SCHEDULE_DEFAULTS.items():
            if name.startswith("warmup") or name in used or getattr(self, name) == default:
                continue
            users = [k for k, options in _SCHEDULE_OPTIONS.items() if name in options]
            raise ValueError(
                f"{name} = {getattr(self, name)!r} is not allowed with schedule = "
                f"{self.kind!r}, which does not use it (used by {' and '.join(map(repr, users))}"
                f"): leave it at {default!r}."
            )
        if self.kind == "step" and not self.step_epochs and not milestones:
            raise ValueError(
                "step_epochs = 0 is not allowed with schedule = 'step' and no step_milestones: "
                "give step_epochs > 0 (a drop every that many epochs) or step_milestones (the "
                "epochs of the drops)."
            )
        if self.step_epochs and milestones:
            raise ValueError(
                f"step_epochs = {self.step_epochs!r} is not allowed together with "
                f"step_milestones = {milestones!r}: give one of them."
            )

    @property
    def needs_length(self) -> bool:
        """True if the factor depends on the length of the run or of an epoch."""
        return self.kind != "constant"

    def factor(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The learning-rate factor of one optimiser step.

        Args:
            step: The optimiser step, 0-based, counted from the start of the run.
            total_steps: Optimiser steps of the whole run (``"linear"``, ``"cosine"``).
            steps_per_epoch: Optimiser steps per epoch (``"step"``).

        Returns:
            The factor on the learning rate, in [0, 1].
        """
        if step < self.warmup_steps:
            return self.warmup_factor or (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            epoch = step // max(steps_per_epoch, 1)
            if self.step_epochs:
                drops = epoch // self.step_epochs
            else:
                drops = sum(epoch >= e for e in self.step_milestones)
            return float(self.step_gamma**drops)
        progress = min(1.0, (step - self.warmup_steps) / max(total_steps - self.warmup_steps, 1))
        shape = (
            1.0 - progress if self.kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        )
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


@dataclass(frozen=True)
class TrainRecipe:
    """How a model is trained: the arguments of :func:`fit` (the FP baselines of the workloads).

    Attributes:
        epochs: Passes over the training loader.
        lr: Learning rate (the optimiser's base rate).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        weight_decay: Weight decay (L2 for ``"adam"`` and ``"sgd"``, decoupled for
            ``"adamw"``).
        max_steps: Optimiser steps per epoch at most (0: the whole loader).
        grad_clip: Gradient-norm clip (0: none).
        lr_decay: Learning-rate factor per epoch (multiplies with the schedule).
        schedule: ``"constant"``, ``"linear"``, ``"cosine"`` or ``"step"``
            (:class:`LRSchedule`).
        warmup_steps, warmup_factor, min_lr_ratio, step_epochs, step_milestones, step_gamma:
            The options of the schedule (:class:`LRSchedule`; the defaults are no warm-up and
            no decay).

    Raises:
        ValueError: For a value out of its range (the message names the field).
    """

    epochs: int
    lr: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    max_steps: int = 0
    grad_clip: float = 0.0
    lr_decay: float = 1.0
    schedule: str = "constant"
    warmup_steps: int = 0
    warmup_factor: float = 0.0
    min_lr_ratio: float = 0.0
    step_epochs: int = 0
    step_milestones: tuple[int, ...] = ()
    step_gamma: float = 0.1

    @property
    def lr_schedule(self) -> LRSchedule:
        """The :class:`LRSchedule` of the recipe."""
        return LRSchedule(
            kind=self.schedule,
            **{name: getattr(self, name) for name in _SCHEDULE_DEFAULTS},
        )

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> TrainRecipe:
        """The recipe from a workload's parameters (fields it lacks keep their defaults)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in parameters.items() if k in names})

    def __post_init__(self) -> None:
        for name in ("epochs", "max_steps"):
            _check_int(name, getattr(self, name))
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
        # Validates the schedule; milestones become a tuple (YAML and JSON give lists).
        object.__setattr__(self, "step_milestones", self.lr_schedule.step_milestones)


def _steps_per_epoch(loader: Iterable[Batch], max_steps: int, schedule: LRSchedule) -> int:
    """Optimiser steps per epoch (0 if unknown and the schedule does not need it)."""
    if isinstance(loader, Sized):
        return min(len(loader), max_steps) if max_steps else len(loader)
    if max_steps:
        return max_steps
    if schedule.needs_length:
        raise ValueError(
            f"max_steps = 0 is not allowed with schedule = {schedule.kind!r} and a loader "
            "without len(): give max_steps (optimiser steps per epoch)."
        )
    return 0


def _schedule_of(schedule: str | LRSchedule, **options: Any) -> LRSchedule:
    """The :class:`LRSchedule` of :func:`fit`'s ``schedule`` and schedule options."""
    if isinstance(schedule, LRSchedule):
        for name, value in options.items():
            value = tuple(value) if name == "step_milestones" else value
            if value != _SCHEDULE_DEFAULTS[name]:
                raise ValueError(
                    f"{name} = {value!r} is not allowed with a ready LRSchedule as schedule: set "
                    "it in the LRSchedule, or pass the schedule's name."
                )
        return schedule
    if not isinstance(schedule, str):
        raise ValueError(
            f"schedule = {schedule!r} is not allowed: expected one of "
            f"{', '.join(map(repr, SCHEDULES))} or an LRSchedule."
        )
    return LRSchedule(schedule, **options)


def _split_batch(batch: Batch, device: torch.device) -> tuple[Tensor, Tensor]:
    inputs, targets = batch[0], batch[1]
    return inputs.to(device), targets.to(device)


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimiser ``name`` as :func:`fit` uses it.

    ``"adam"``: :class:`torch.optim.Adam` (L2 weight decay added to the gradient); ``"adamw"``:
    :class:`torch.optim.AdamW` (decoupled weight decay); ``"sgd"``: SGD with momentum 0.9.

    Raises:
        ValueError: For an unknown name.
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    raise ValueError(
        f"optimizer = {name!r} is not allowed: expected one of {', '.join(map(repr, OPTIMIZERS))}."
    )


def fit(
    model: nn.Module,
    loader: Iterable[Batch],
    epochs: int,
    lr: float,
    seed: int,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    progress: bool = True,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    batch_loss: Callable[[nn.Module, Batch], tuple[Tensor, int]] | None = None,
    max_steps: int = 0,
    grad_clip: float = 0.0,
    lr_decay: float = 1.0,
    schedule: str | LRSchedule = "constant",
    warmup_steps: int = 0,
    warmup_factor: float = 0.0,
    min_lr_ratio: float = 0.0,
    step_epochs: int = 0,
    step_milestones: Sequence[int] = (),
    step_gamma: float = 0.1,
    start_epoch: int = 0,
    total_epochs: int = 0,
) -> list[float]:
    """Train a model with a plain mini-batch loop.

    Puts the model in ``train()`` mode and leaves it there. Batches are moved to the device of
    the model's parameters. Random draws of the model itself (e.g. dropout) come from a torch
    RNG seeded with ``seed`` inside :func:`torch.random.fork_rng`, so they are reproducible and
    the global RNG is left as it was; the shuffling order is the loader's own (see
    :func:`analoglib.data.make_loader`).

    Learning rate of optimiser step k of the run: the rate stored in the optimiser (``lr``, or
    a ready optimiser's own per-group rate), times ``lr_decay ** e`` after e finished epochs of
    the call (``lr_decay`` lowers the stored rate after every epoch), times the schedule's
    factor of step k (:class:`LRSchedule`: warm-up, then constant, linear, cosine or step
    decay). The two compose multiplicatively; leave ``lr_decay`` at 1 to use the schedule
    alone. The factor is applied around every ``optimizer.step()`` and undone after it, so the
    optimiser keeps its unscheduled rate between steps and after the call (what a checkpoint
    of its state dict records). With the defaults (no schedule, ``lr_decay`` 1) every step runs
    at exactly the stored rate, as in a plain loop.

    A run trained over several calls (HWA training saves a checkpoint after every epoch, and a
    resumed run continues from one) passes the same optimiser and ``start_epoch`` (epochs
    already done) and ``total_epochs`` (of the whole run) to every call: the schedule is then a
    function of the step of the whole run, and the split run reproduces the uninterrupted one
    bit for bit. Without them, each call runs its own schedule from the call's first step,
    relative to the optimiser's rate at that point.

    Args:
        model: A digital or analog model.
        loader: Yields ``(inputs, targets)`` batches.
        epochs: Passes over ``loader``, >= 0.
        lr: Learning rate.
        seed: Seed of the model's own random draws during training.
        optimizer: ``"adam"`` (:class:`torch.optim.Adam`), ``"adamw"``
            (:class:`torch.optim.AdamW`, decoupled weight decay) or ``"sgd"`` (momentum 0.9;
            :func:`make_optimizer`), or a ready ``torch.optim`` optimiser over the model's
            parameters; its state (momenta, learning rates) then carries over between calls,
            ``lr`` and ``weight_decay`` are not used, and the schedule scales each group's own
            rate. Steps act on the effective weights of analog layers
            (:func:`~analoglib.training.weight_space_updates`, registered for the call).
        weight_decay: Weight decay of the optimiser: L2 (added to the gradient) for ``"adam"``
            and ``"sgd"``, decoupled (``w -= lr * weight_decay * w``) for ``"adamw"``.
        progress: Show a progress bar (also off when ``ANALOGLIB_PROGRESS=0``).
        loss_fn: ``loss_fn(outputs, targets)``; cross-entropy by default.
        after_step: Called with the model after every optimiser step (e.g. weight clipping).
        batch_loss: ``batch_loss(model, batch) -> (loss, n_samples)`` for batches that are not
            ``(inputs, targets)`` pairs (language models, tokenised text); replaces ``loss_fn``.
        max_steps: Optimiser steps per epoch at most; 0 means the whole loader.
        grad_clip: Clip the gradient norm (of dL/dW for analog weights) to this value before
            each step; 0 means no clipping.
        lr_decay: Multiply the stored learning rate by this factor after every epoch, in
            (0, 1]; composes multiplicatively with ``schedule``.
        schedule: ``"constant"``, ``"linear"``, ``"cosine"`` or ``"step"`` (:data:`SCHEDULES`;
            formulas in :class:`LRSchedule`), configured by the arguments below; or a ready
            :class:`LRSchedule` (then the arguments below must keep their defaults).
        warmup_steps: Optimiser steps of warm-up at the start of the run, >= 0: step k < w runs
            at ``lr * (k + 1) / w`` (0: no warm-up).
        warmup_factor: 0 for the linear warm-up; in (0, 1]: the warm-up runs at the constant
            ``lr * warmup_factor`` instead.
        min_lr_ratio: ``"linear"`` and ``"cosine"``: the factor, in [0, 1], reached at the end
            of the run (``total_epochs`` times the steps per epoch).
        step_epochs: ``"step"``: multiply by ``step_gamma`` every that many epochs (> 0).
        step_milestones: ``"step"``: instead of ``step_epochs``, the epochs (increasing, > 0)
            from which the rate is multiplied by ``step_gamma`` once more.
        step_gamma: ``"step"``: the factor per drop, in (0, 1].
        start_epoch: Epochs already trained in this run (a run resumed, or trained over
            several calls), >= 0: the schedule continues after them.
        total_epochs: Epochs of the whole run, >= ``start_epoch + epochs``; 0 means
            ``start_epoch + epochs``.

    Returns:
        The mean training loss of each epoch (sample-weighted), ``epochs`` values.

    Raises:
        ValueError: For an unknown optimiser or schedule, a negative ``epochs``,
            ``max_steps``, ``start_epoch`` or ``total_epochs``, ``lr <= 0``, a negative
            ``grad_clip``, ``lr_decay`` outside (0, 1], a schedule option out of its range or
            unused by the schedule (:class:`LRSchedule`), schedule options next to a ready
            :class:`LRSchedule`, ``total_epochs`` below ``start_epoch + epochs``, or a
            schedule that needs the epoch length with a loader without ``len()`` and
            ``max_steps`` 0.

    References:
        Rasch et al. 2023 (HWA training over checkpointed epochs); ``docs/model.md#hwa-training``,
        ``docs/model.md#recipe-choices``.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs = {epochs!r} is not allowed: expected an integer >= 0.")
    if not lr > 0:
        raise ValueError(f"lr = {lr!r} is not allowed: expected a learning rate > 0.")
    if not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps = {max_steps!r} is not allowed: expected an integer >= 0.")
    if not grad_clip >= 0:
        raise ValueError(f"grad_clip = {grad_clip!r} is not allowed: expected a norm >= 0.")
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay = {lr_decay!r} is not allowed: expected a factor in (0, 1].")
    for name, value in (("start_epoch", start_epoch), ("total_epochs", total_epochs)):
        _check_int(name, value)
    if total_epochs and total_epochs < start_epoch + epochs:
        raise ValueError(
            f"total_epochs = {total_epochs!r} is not allowed: expected 0 or at least "
            f"start_epoch + epochs = {start_epoch + epochs}."
        )
    plan = _schedule_of(
        schedule,
        warmup_steps=warmup_steps,
        warmup_factor=warmup_factor,
        min_lr_ratio=min_lr_ratio,
        step_epochs=step_epochs,
        step_milestones=step_milestones,
        step_gamma=step_gamma,
    )
    steps_per_epoch = _steps_per_epoch(loader, max_steps, plan)
    total_steps = (total_epochs or start_epoch + epochs) * steps_per_epoch
    criterion = nn.functional.cross_entropy if loss_fn is None else loss_fn
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = make_optimizer(
            optimizer, (p for p in model.parameters() if p.requires_grad), lr, weight_decay
        )
    # Steps on the effective weights of analog layers; the gradient clip runs after that
    # conversion (hooks run in registration order), on dL/dW as in plain training.
    handles = list(weight_space_updates(opt, model))
    steps_done = start_epoch * steps_per_epoch  # optimiser steps of the run so far

    def scale_lr() -> None:
        factor = plan.factor(steps_done, total_steps, steps_per_epoch)
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
            group["lr"] = group["lr"] * factor

    def restore_lr() -> None:
        nonlocal steps_done
        for group in opt.param_groups:
            group["lr"] = group.pop("base_lr")
        steps_done += 1

    handles += register_step_hooks(opt, scale_lr, restore_lr)
    if grad_clip > 0:
        params = [p for p in model.parameters() if p.requires_grad]

        def clip_gradients() -> None:
            nn.utils.clip_grad_norm_(params, grad_clip)

        handles += register_step_hooks(opt, clip_gradients, lambda: None)
    device = model_device(model)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    history: list[float] = []
    model.train()
    bar = tqdm(range(epochs), desc="fit", unit="epoch", disable=not progress_enabled(progress))
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            for epoch in bar:
                if steps_per_epoch:  # a loader shorter than max_steps keeps the epoch grid
                    steps_done = (start_epoch + epoch) * steps_per_epoch
                total, count = 0.0, 0
                for step, batch in enumerate(loader):
                    if max_steps and step >= max_steps:
                        break
                    opt.zero_grad(set_to_none=True)
                    if batch_loss is not None:
                        loss, n_samples = batch_loss(model, batch)
                    else:
                        inputs, targets = _split_batch(batch, device)
                        loss, n_samples = criterion(model(inputs), targets), len(targets)
                    loss.backward()
                    opt.step()
                    if after_step is not None:
                        after_step(model)
                    total += float(loss.detach()) * n_samples
                    count += n_samples
                history.append(total / max(count, 1))
                for group in opt.param_groups:
                    group["lr"] *= lr_decay
                bar.set_postfix(loss=f"{history[-1]:.4f}")
    finally:
        bar.close()
        for handle in handles:
            handle.remove()
        for group in opt.param_groups:  # a step that raised left its scaled rate
            if "base_lr" in group:
                group["lr"] = group.pop("base_lr")
    return history


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Batch], max_batches: int = 0) -> float:
    """Top-1 classification accuracy.

    Puts the model in ``eval()`` mode (a programmed analog model then computes with its
    drifted weights) and leaves it there.

    Args:
        model: A classifier returning ``(batch, classes)`` logits.
        loader: Yields ``(inputs, targets)`` batches.
        max_batches: Evaluate on the first ``max_batches`` batches only; 0 means all.

    Returns:
        The fraction of correctly classified samples, in [0, 1].

    Raises:
        ValueError: If ``loader`` yields no samples or ``max_batches`` is negative.
    """
    if not isinstance(max_batches, int) or max_batches < 0:
        raise ValueError(f"max_batches = {max_batches!r} is not allowed: expected an integer >= 0.")
    model.eval()
    device = model_device(model)
    correct, count = 0, 0
    for index, batch in enumerate(loader):
        if max_batches and index >= max_batches:
            break
        inputs, targets = _split_batch(batch, device)
        predicted = model(inputs).argmax(dim=-1)  # (batch,)
        correct += int((predicted == targets).sum())
        count += len(targets)
    if count == 0:
        raise ValueError("loader yielded no samples: cannot compute an accuracy.")
    return correct / count


def classification_eval_fn(
    loader: Iterable[Batch], max_batches: int = 0
) -> Callable[[nn.Module], float]:
    """An ``eval_fn`` for :func:`analoglib.evaluate`: ``model -> accuracy(model, loader)``.

    Args:
        loader: Test batches (use a loader without shuffling for a fixed evaluation set).
        max_batches: Passed to :func:`accuracy`; 0 means all batches.

    Returns:
        A function of the model that returns its top-1 accuracy in [0, 1].

    Raises:
        ValueError: If ``loader`` has a length and it is 0.
    """
    if isinstance(loader, Sized) and len(loader) == 0:
        raise ValueError("loader is empty: cannot compute an accuracy.")

    def eval_fn(model: nn.Module) -> float:
        return accuracy(model, loader, max_batches=max_batches)

    return eval_fn
