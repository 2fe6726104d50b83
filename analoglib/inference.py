"""Programming, drift and evaluation of analog models; saving and loading them.

Programming is an explicit event: :func:`program` draws one realisation of the programming noise
and drift exponents and keeps it; :func:`drift` moves that realisation to a time after
programming and never programs implicitly. For independent chip instances, program again
(:func:`evaluate` does this once per repetition).

References:
    ``docs/model.md#programming`` (programming and drift semantics) and ``docs/model.md#gdc``
    (drift compensation).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from analoglib.cache import atomic_save
from analoglib.nn.convert import named_analog_layers, require_analog_layers
from analoglib.utils import derive_seed, make_generator, progress_enabled

__all__ = [
    "drift",
    "drift_analog_weights",
    "evaluate",
    "load",
    "program",
    "program_analog_weights",
    "save",
    "set_forward_seed",
]

EvalResult = float | dict[str, float]


def _check_seed(seed: Any) -> int:
    # numbers.Integral also admits NumPy integers (e.g. seeds taken from np.arange).
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"seed = {seed!r} is not allowed: expected an integer.")
    return int(seed)


def _check_time(t_inference_s: Any) -> float:
    # numbers.Real also admits NumPy scalars (e.g. times taken from np.array([1, 3600])).
    ok = isinstance(t_inference_s, numbers.Real) and not isinstance(t_inference_s, bool)
    if not ok or not math.isfinite(t_inference_s) or t_inference_s < 0:
        raise ValueError(
            f"t_inference_s = {t_inference_s!r} is not allowed: expected a finite time >= 0 s."
        )
    return float(t_inference_s)


def program(model: nn.Module, seed: int) -> int:
    """Program every analog layer: draw one programming realisation and keep it.

    Puts the model in ``eval()`` mode (programmed weights are used in evaluation only).

    Args:
        model: A converted model.
        seed: Seed of this realisation; layer k draws from a stream derived from ``(seed, k)``.

    Returns:
        ``seed``, for the record.

    Raises:
        ValueError: If ``model`` has no analog layers or ``seed`` is not an integer.

    References:
        ``docs/model.md#pcm``, ``docs/model.md#programming``.
    """
    _check_seed(seed)
    model.eval()
    for index, (_, layer) in enumerate(require_analog_layers(model)):
        generator = make_generator(derive_seed(seed, "program", index), layer.weight.device)
        layer.program(generator, seed=seed)
    return seed


def drift(model: nn.Module, t_inference_s: float, seed: int) -> None:
    """Move the kept programming realisation to ``t_inference_s`` seconds after programming.

    Applies conductance drift and accumulated 1/f read noise (a new read-noise draw from
    ``seed``) and recomputes the drift-compensation factors. Puts the model in ``eval()`` mode.

    Args:
        model: A programmed model.
        t_inference_s: Seconds after programming, >= 0.
        seed: Seed of the read-noise draw.

    Raises:
        RuntimeError: If the model (any analog layer) was never programmed.
        ValueError: If the time is negative or not finite, or the seed not an integer.

    References:
        ``docs/model.md#drift``, ``docs/model.md#read-noise``, ``docs/model.md#programming``,
        ``docs/model.md#gdc``.
    """
    t = _check_time(t_inference_s)
    _check_seed(seed)
    layers = require_analog_layers(model)
    unprogrammed = [name for name, layer in layers if not layer.is_programmed]
    if unprogrammed:
        raise RuntimeError(
            "drift needs a programmed model; these analog layers are not programmed: "
            + ", ".join(unprogrammed)
            + ". Call analoglib.program(model, seed) first."
        )
    model.eval()
    for index, (_, layer) in enumerate(layers):
        generator = make_generator(derive_seed(seed, "drift", index), layer.weight.device)
        layer.drift(t, generator)


def set_forward_seed(model: nn.Module, seed: int) -> None:
    """Restart the forward-noise streams (read and output noise) of every analog layer."""
    _check_seed(seed)
    for index, (_, layer) in enumerate(require_analog_layers(model)):
        layer.set_forward_seed(derive_seed(seed, "forward", index))


def evaluate(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], EvalResult],
    t_inferences: Sequence[float],
    n_reps: int,
    seed: int,
    drift_compensation: bool | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate a model over programming repetitions and drift times.

    Repetition r programs the model with seed ``seed + r``; for each time it drifts with a seed
    derived from ``(seed + r, time index)`` and restarts the forward noise likewise, then calls
    ``eval_fn(model)`` under ``torch.no_grad()`` in ``eval()`` mode.

    Args:
        model: A converted model.
        eval_fn: Returns a metric (float) or a dict of named metrics.
        t_inferences: Times after programming (s), each >= 0.
        n_reps: Number of independent programming repetitions, >= 1.
        seed: Base seed.
        drift_compensation: Force global drift compensation on (True) or off (False);
            None uses each layer's config.
        progress: Show a progress bar (also off when ``ANALOGLIB_PROGRESS=0``).

    Returns:
        A tidy table with one row per (repetition, time): columns ``rep``, ``seed``,
        ``t_inference_s``, ``drift_compensation`` and the metric column(s) (``metric`` for a
        float result).

    Raises:
        ValueError: For an empty or invalid list of times, ``n_reps < 1``, a bad seed, or a NaN
            metric from ``eval_fn``. Any error raised while evaluating (by ``eval_fn`` too, or a
            ``KeyboardInterrupt``) carries the rows finished before it as the table
            ``error.partial_results``.
    """
    _check_seed(seed)
    if not isinstance(n_reps, int) or isinstance(n_reps, bool) or n_reps < 1:
        raise ValueError(f"n_reps = {n_reps!r} is not allowed: expected an integer >= 1.")
    times = [_check_time(t) for t in t_inferences]
    if not times:
        raise ValueError("t_inferences = [] is not allowed: expected at least one time (s).")
    layers = require_analog_layers(model)
    saved = [layer.config.drift_compensation.type for _, layer in layers]
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=n_reps * len(times), desc="evaluate", disable=not progress_enabled(progress))
    try:
        if drift_compensation is not None:
            for _, layer in layers:
                layer.config.drift_compensation.type = "global" if drift_compensation else "none"
        for rep in range(n_reps):
            rep_seed = seed + rep
            program(model, rep_seed)
            for t_index, t in enumerate(times):
                drift(model, t, derive_seed(rep_seed, "drift_time", t_index))
                set_forward_seed(model, derive_seed(rep_seed, "forward_time", t_index))
                with torch.no_grad():
                    result = eval_fn(model)
                metrics = result if isinstance(result, dict) else {"metric": result}
                values = {k: float(v) for k, v in metrics.items()}
                nan = sorted(k for k, v in values.items() if math.isnan(v))
                if nan:
                    raise ValueError(
                        f"eval_fn returned NaN for {', '.join(map(repr, nan))} at repetition "
                        f"{rep}, t_inference_s = {t:g}: a metric must be a number (NaN usually "
                        "means NaN outputs or an empty evaluation set)."
                    )
                rows.append(
                    {
                        "rep": rep,
                        "seed": rep_seed,
                        "t_inference_s": t,
                        "drift_compensation": layers[0][1].config.drift_compensation.type != "none",
                        **values,
                    }
                )
                bar.update()
    except BaseException as error:
        # Keep the finished work: the rows evaluated so far travel with the error.
        error.partial_results = pd.DataFrame(rows)  # type: ignore[attr-defined]
        raise
    finally:
        bar.close()
        for (_, layer), value in zip(layers, saved, strict=True):
            layer.config.drift_compensation.type = value
    return pd.DataFrame(rows)


def save(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save the state dict (weights, configs, programmed and drifted state) to ``path``.

    Written to a temporary file first and renamed, so an interrupted save leaves no partial
    file. Loading it back with :func:`load` restores the model bit for bit.
    """
    return atomic_save(model.state_dict(), Path(path))


def load(
    model: nn.Module,
    path: str | os.PathLike[str],
    config: str = "check",
    map_location: str | torch.device | None = None,
) -> nn.Module:
    """Load a state dict saved by :func:`save` into ``model``.

    The model's config is never replaced by the checkpoint's. With ``config="check"`` a
    checkpoint saved under a different config raises
    :class:`~analoglib.nn.base.ConfigMismatchError`; with ``config="keep"`` the model keeps its
    own config and a warning lists the differences.

    The programmed state (programmed conductances, drift exponents, drifted weights and the
    drift-compensation baseline) is restored when the configs agree, or when they differ only
    in groups that programming does not depend on (``modifier``, ``clip``, ``remap``,
    ``pre_post``). A difference in ``mapping``, ``forward``, ``noise_model`` or
    ``drift_compensation`` makes the saved realisation stale: it is dropped (the warning says
    so) and the model must be programmed again.

    Raises:
        ValueError: If ``config`` is neither ``"check"`` nor ``"keep"``.
    """
    if config not in ("check", "keep"):
        raise ValueError(f"config = {config!r} is not allowed: expected 'check' or 'keep'.")
    state = torch.load(path, map_location=map_location, weights_only=False)
    layers = [layer for _, layer in named_analog_layers(model)]
    for layer in layers:
        layer._keep_config_on_load = config == "keep"  # type: ignore[assignment]
    try:
        model.load_state_dict(state)
    finally:
        for layer in layers:
            layer._keep_config_on_load = False  # type: ignore[assignment]
    return model


# aihwkit-style aliases.
def program_analog_weights(model: nn.Module, seed: int) -> int:
    """Alias of :func:`program` (aihwkit's name)."""
    return program(model, seed)


def drift_analog_weights(model: nn.Module, t_inference_s: float, seed: int) -> None:
    """Alias of :func:`drift` (aihwkit's name); never programs implicitly."""
    drift(model, t_inference_s, seed)
