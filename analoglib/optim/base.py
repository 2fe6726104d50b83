"""Shared machinery of the post-training optimisers: calibration passes and undoable reports.

A post-training (PT) optimiser changes tensors of the analog layers (input ranges, weights,
digital scales) from statistics gathered on a calibration set. It returns a
:class:`PostTrainingReport` that tabulates the change and keeps the previous values, so
``report.undo()`` restores the model exactly.

References:
    Lammie et al. 2024; ``docs/model.md#periphery``, ``docs/model.md#post-training``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from analoglib.nn.base import AnalogLayerBase

__all__ = ["PostTrainingReport", "default_run_batch", "ideal_mode", "run_calibration"]

RunBatch = Callable[[nn.Module, Any], Any]


def default_run_batch(model: nn.Module, batch: Any) -> Any:
    """Run ``model`` on one batch: a tensor, the first item of a tuple/list, or a dict of kwargs.

    Raises:
        ValueError: For any other batch type (pass ``run_batch`` for those).
    """
    if isinstance(batch, Tensor):
        return model(batch)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return model(batch[0])
    if isinstance(batch, dict):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "label")}
        return model(**inputs)
    raise ValueError(
        f"batch of type {type(batch).__name__} is not allowed by default_run_batch: expected "
        "a tensor, a tuple/list starting with the input tensor, or a dict of model inputs; "
        "pass run_batch=... for other batches (a workload's batch_loss works)."
    )


@contextmanager
def ideal_mode(
    layers: Sequence[tuple[str, AnalogLayerBase]],
    observers: Sequence[Callable[[Tensor], None]] | None = None,
) -> Iterator[None]:
    """Run every layer with its exact digital forward (optionally observing tile inputs)."""
    try:
        for i, (_, layer) in enumerate(layers):
            layer.set_ideal_forward(True, observers[i] if observers is not None else None)
        yield
    finally:
        for _, layer in layers:
            layer.set_ideal_forward(False)


def run_calibration(
    model: nn.Module,
    batches: Iterable[Any],
    run_batch: RunBatch | None = None,
    max_batches: int = 0,
) -> int:
    """Run ``model`` in ``eval()`` mode without gradients on calibration batches.

    Args:
        model: The model (its training flag is restored afterwards).
        batches: Calibration batches.
        run_batch: ``run_batch(model, batch)``; default :func:`default_run_batch`.
        max_batches: Use at most this many batches (0: all).

    Returns:
        The number of batches run.

    Raises:
        ValueError: If ``max_batches`` is negative or no batch was run.
    """
    if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 0:
        raise ValueError(f"max_batches = {max_batches!r} is not allowed: expected an int >= 0.")
    run = run_batch or default_run_batch
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for batch in itertools.islice(batches, max_batches or None):
                run(model, batch)
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("batches is empty: the calibration needs at least one batch.")
    return n


class PostTrainingReport:
    """What a post-training optimiser changed, with the previous values kept for :meth:`undo`.

    Attributes:
        method: Name of the optimiser.
        settings: Its arguments (for the record).
        table: One row per tile (or column) with the values before and after.
    """

    def __init__(
        self,
        method: str,
        settings: dict[str, Any],
        table: pd.DataFrame,
        saved: list[tuple[Tensor, Tensor]],
    ) -> None:
        self.method = method
        self.settings = settings
        self.table = table
        self._saved = saved  # (live tensor, its previous value)
        self.undone = False

    @staticmethod
    def snapshot(tensors: Iterable[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Pairs of (tensor, clone) to pass as ``saved``; take it before changing anything."""
        return [(t, t.detach().clone()) for t in tensors]

    def undo(self) -> None:
        """Restore every changed tensor to its value before the optimiser ran (exactly).

        Raises:
            RuntimeError: If the report was already undone.
        """
        if self.undone:
            raise RuntimeError(f"{self.method}: this report was already undone.")
        with torch.no_grad():
            for live, previous in self._saved:
                live.copy_(previous)
        self.undone = True

    def summary(self) -> pd.DataFrame:
        """Per-layer means of the numeric columns of :attr:`table`."""
        numeric = self.table.select_dtypes("number").columns.drop("tile", errors="ignore")
        return self.table.groupby("layer", sort=False)[list(numeric)].mean()

    def __repr__(self) -> str:
        n_layers = self.table["layer"].nunique() if len(self.table) else 0
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        state = ", undone" if self.undone else ""
        return (
            f"PostTrainingReport({self.method}: {len(self.table)} rows over {n_layers} "
            f"layers; {settings}{state})"
        )
