"""Generic training and evaluation loops for digital and analog models.

The loops only use the ``nn.Module`` interface, so a converted (analog) model trains with the
same :func:`fit` as its digital original; hardware-aware training adds its weight modifiers,
clipping and remapping through the model's configuration and the ``after_step`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sized
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


@dataclass(frozen=True)
class LRSchedule:
    """Learning-rate schedule of :func:`fit`: a factor on the optimiser's learning rate per step.

    Step k (0-based, counted over the whole run) uses ``lr * factor(k)``:

    * warm-up: ``(k + 1) / warmup_steps`` while ``k < warmup_steps`` (linear from lr /
      warmup_steps to lr);
    * ``"constant"``: 1;
    * ``"linear"`` and ``"cosine"``: from 1 after the warm-up down to ``min_lr_ratio`` at the
      end of the run, linearly or along half a cosine,
      ``m + (1 - m) (1 + cos(pi p)) / 2`` with ``p = (k - warmup_steps) / (total - warmup_steps)``;
    * ``"step"``: ``decay_gamma ** n`` with n the number of ``decay_epochs`` milestones reached
      (epoch of step k = k // steps per epoch).

    Attributes:
        kind: One of :data:`SCHEDULES`.
        warmup_steps: Optimiser steps of linear warm-up (0: none).
        min_lr_ratio: Final factor of ``"linear"`` and ``"cosine"``, in [0, 1].
        decay_epochs: Epochs at which ``"step"`` multiplies the rate by ``decay_gamma``
            (increasing, > 0).
        decay_gamma: Factor per milestone, in (0, 1].
    """

    kind: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_epochs: tuple[int, ...] = ()
    decay_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"schedule = {self.kind!r} is not allowed: expected one of "
                f"{', '.join(map(repr, SCHEDULES))}."
            )
        w = self.warmup_steps
        if not isinstance(w, int) or isinstance(w, bool) or w < 0:
            raise ValueError(f"warmup_steps = {w!r} is not allowed: expected an integer >= 0.")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"min_lr_ratio = {self.min_lr_ratio!r} is not allowed: expected a ratio in [0, 1]."
            )
        epochs = tuple(self.decay_epochs)
        if not all(isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in epochs) or (
            list(epochs) != sorted(set(epochs))
        ):
            raise ValueError(
                f"decay_epochs = {self.decay_epochs!r} is not allowed: expected increasing "
                "epochs > 0."
            )
        object.__setattr__(self, "decay_epochs", epochs)
        if self.kind == "step" and not epochs:
            raise ValueError(
                "decay_epochs = () is not allowed with schedule = 'step': give the epochs at "
                "which the rate drops."
            )
        if not 0 < self.decay_gamma <= 1:
            raise ValueError(
                f"decay_gamma = {self.decay_gamma!r} is not allowed: expected a factor in (0, 1]."
            )

    @property
    def needs_length(self) -> bool:
        """True if the factor depends on the length of the run or of an epoch."""
        return self.kind != "constant"

    def factor(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The learning-rate factor of optimiser step ``step`` (0-based) of ``total_steps``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            epoch = step // max(steps_per_epoch, 1)
            return self.decay_gamma ** sum(epoch >= e for e in self.decay_epochs)
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
        lr: Learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        weight_decay: Weight decay (L2 for ``"adam"`` and ``"sgd"``, decoupled for
            ``"adamw"``).
        max_steps: Optimiser steps per epoch at most (0: the whole loader).
        grad_clip: Gradient-norm clip (0: none).
        lr_decay: Learning-rate factor per epoch.
        schedule, warmup_steps, min_lr_ratio, decay_epochs, decay_gamma: The learning-rate
            schedule (:class:`LRSchedule`; the default is a constant rate).
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
    min_lr_ratio: float = 0.0
    decay_epochs: tuple[int, ...] = ()
    decay_gamma: float = 0.1

    @property
    def lr_schedule(self) -> LRSchedule:
        """The :class:`LRSchedule` of the recipe."""
        return LRSchedule(
            self.schedule, self.warmup_steps, self.min_lr_ratio, self.decay_epochs, self.decay_gamma
        )

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> TrainRecipe:
        """The recipe from a workload's parameters (fields it lacks keep their defaults)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in parameters.items() if k in names})

    def __post_init__(self) -> None:
        for name in ("epochs", "max_steps"):
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
        object.__setattr__(self, "decay_epochs", self.lr_schedule.decay_epochs)  # validates


def _steps_per_epoch(loader: Iterable[Batch], max_steps: int, schedule: LRSchedule) -> int:
    """Optimiser steps per epoch (0 if unknown and the schedule does not need it)."""
    if isinstance(loader, Sized):
        return min(len(loader), max_steps) if max_steps else len(loader)
    if max_steps:
        return max_steps
    if schedule.needs_length:
        raise ValueError(
            f"max_steps = 0 is not allowed with schedule = {schedule.kind!r} and a loader "
            "without len(): give max_steps (steps per epoch)."
        )
    return 0


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
    schedule: LRSchedule | None = None,
    start_epoch: int = 0,
    total_epochs: int = 0,
) -> list[float]:
    """Train a model with a plain mini-batch loop.

    Puts the model in ``train()`` mode and leaves it there. Batches are moved to the device of
    the model's parameters. Random draws of the model itself (e.g. dropout) come from a torch
    RNG seeded with ``seed`` inside :func:`torch.random.fork_rng`, so they are reproducible and
    the global RNG is left as it was; the shuffling order is the loader's own (see
    :func:`analoglib.data.make_loader`).

    Args:
        model: A digital or analog model.
        loader: Yields ``(inputs, targets)`` batches.
        epochs: Passes over ``loader``, >= 0.
        lr: Learning rate.
        seed: Seed of the model's own random draws during training.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9), or a ready ``torch.optim``
            optimiser over the model's parameters; its state (momenta, learning rate) then
            carries over between calls, and ``lr`` and ``weight_decay`` are not used. Steps
            act on the effective weights of analog layers
            (:func:`~analoglib.training.weight_space_updates`, registered for the call).
        weight_decay: L2 weight decay of the optimiser.
        progress: Show a progress bar (also off when ``ANALOGLIB_PROGRESS=0``).
        loss_fn: ``loss_fn(outputs, targets)``; cross-entropy by default.
        after_step: Called with the model after every optimiser step (e.g. weight clipping).
        batch_loss: ``batch_loss(model, batch) -> (loss, n_samples)`` for batches that are not
            ``(inputs, targets)`` pairs (language models, tokenised text); replaces ``loss_fn``.
        max_steps: Optimiser steps per epoch at most; 0 means the whole loader.
        grad_clip: Clip the gradient norm (of dL/dW for analog weights) to this value before
            each step; 0 means no clipping.
        lr_decay: Multiply the learning rate by this factor after every epoch.
        schedule: Learning-rate schedule (:class:`LRSchedule`): a factor applied to every
            group's learning rate for the duration of each step (the rate stored in the
            optimiser, which ``lr_decay`` lowers, is the base). None: constant.
        start_epoch: Epochs already trained in this run (a run resumed, or trained over
            several calls): the schedule continues after them.
        total_epochs: Epochs of the whole run, at whose end ``"linear"`` and ``"cosine"``
            reach ``min_lr_ratio``; 0 means ``start_epoch + epochs``.

    Returns:
        The mean training loss of each epoch (sample-weighted), ``epochs`` values.

    Raises:
        ValueError: For an unknown optimiser, a negative ``epochs`` or ``max_steps``,
            ``lr <= 0``, a negative ``grad_clip`` or ``lr_decay`` outside (0, 1].
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
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 0.")
    schedule = schedule if schedule is not None else LRSchedule()
    steps_per_epoch = _steps_per_epoch(loader, max_steps, schedule)
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
        factor = schedule.factor(steps_done, total_steps, steps_per_epoch)
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
            for _ in bar:
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
