"""True evaluation of candidate architectures on the simulator: train, HWA-train, program, drift.

One candidate (:func:`evaluate_candidate`): the :class:`~analoglib.models.AnalogNASResNet` of
its configuration is trained in floating point (Adam), converted to the standard PCM model on
tiles of ``max_input_size`` rows (AnalogNAS used 256), trained hardware-aware with weight noise
(:func:`~analoglib.training.post_update_step` after every step), and then programmed
``n_reps`` times and drifted to every time of ``t_inferences`` with global drift compensation.
The result holds the FP accuracy, the analog accuracy (mean and standard deviation over the
programmings) at every time, the accuracy variation ``avm`` (first time minus last time,
points), the parameter count and the tile count.

:func:`evaluate_candidates` evaluates a list through the study executor
(:func:`analoglib.parallel.run_points`: in-process, a process pool or a Dask cluster) and stores
every finished candidate at once in a resumable JSON-lines file keyed by the configuration, so
a rerun returns the stored results bit for bit and an interrupted list resumes.

References:
    Benmeziane et al. 2023; Rasch et al. 2023 (HWA training); ``docs/nas.md#candidate-evaluation``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from analoglib.cache import SIMULATION_REVISION, JsonlStore, json_normalized, key_digest
from analoglib.data import load_digits
from analoglib.data.images import (
    ImageBatchTransform,
    ImageSplit,
    channel_stats,
    load_cifar10,
    load_fashion_mnist,
    make_image_loader,
)
from analoglib.inference import evaluate, set_forward_seed
from analoglib.models.analognas_resnet import AnalogNASResNet
from analoglib.models.resnet import resnet8, resnet20, resnet32
from analoglib.nas.space import FEATURES, parameter_count
from analoglib.nn.convert import convert_to_analog
from analoglib.presets import standard_hwa_2023
from analoglib.summary import summary
from analoglib.training.hwa import ModifierRamp, post_update_step, set_modifier_strength
from analoglib.training.loops import accuracy, classification_eval_fn, fit
from analoglib.utils import check_int, derive_seed, paths

__all__ = [
    "BASELINES",
    "CandidateSpec",
    "candidate_store",
    "evaluate_candidate",
    "evaluate_candidates",
]

_DATASETS = ("digits", "fashion_mnist", "cifar10")
#: Reference networks evaluated with the same recipe: ``{"baseline": "resnet20"}``.
BASELINES: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "resnet8": lambda classes, channels: resnet8(classes, channels),
    "resnet20": lambda classes, channels: resnet20(classes, channels),
    "resnet32": lambda classes, channels: resnet32(classes, channels),
}


@dataclass(frozen=True)
class CandidateSpec:
    """How every candidate is trained and evaluated (all fields enter the cache key).

    Attributes:
        dataset: ``"fashion_mnist"`` (default stand-in), ``"digits"`` (smoke) or
            ``"cifar10"`` (paper profile, from the hub).
        data_source: ``"offline"`` or ``"hub"``.
        n_train: Training images used (the first ``n_train`` of a seeded permutation).
        n_test: Test images used for every accuracy.
        batch_size: Training batch size.
        epochs_fp: FP training epochs (Adam, ``lr_fp``).
        epochs_hwa: HWA training epochs (Adam, ``lr_hwa``).
        lr_fp: FP learning rate.
        lr_hwa: HWA learning rate.
        modifier_std: Strength of the PCM-like weight noise during HWA training.
        ramp_steps: Steps over which the weight noise ramps up from 0.
        max_input_size: Rows of one crossbar tile.
        t_inferences: Times after programming (s).
        n_reps: Programmings per time.
        seed: Seed of the data order, the initialisation and the programmings.
    """

    dataset: str = "fashion_mnist"
    data_source: str = "offline"
    n_train: int = 5000
    n_test: int = 1000
    batch_size: int = 64
    epochs_fp: int = 3
    epochs_hwa: int = 1
    lr_fp: float = 5e-3
    lr_hwa: float = 5e-4
    modifier_std: float = 3.0
    ramp_steps: int = 20
    max_input_size: int = 256
    t_inferences: tuple[float, ...] = (1.0, 86400.0, 2592000.0)
    n_reps: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in _DATASETS:
            raise ValueError(f"dataset = {self.dataset!r} is not allowed: expected {_DATASETS}.")
        for name in ("n_train", "n_test", "batch_size", "n_reps", "max_input_size"):
            check_int(name, getattr(self, name), 1)
        for name in ("epochs_fp", "epochs_hwa", "ramp_steps", "seed"):
            check_int(name, getattr(self, name), 0)
        for name in ("lr_fp", "lr_hwa", "modifier_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} = {getattr(self, name)!r} is not allowed: expected >= 0.")
        times = tuple(float(t) for t in self.t_inferences)
        if len(times) < 2 or any(t < 0 for t in times) or list(times) != sorted(times):
            raise ValueError(
                f"t_inferences = {self.t_inferences!r} is not allowed: expected at least two "
                "increasing times >= 0 (s)."
            )
        object.__setattr__(self, "t_inferences", times)

    def parameters(self) -> dict[str, Any]:
        """Every field plus the simulation revision (the store's header)."""
        return json_normalized(
            {**dataclasses.asdict(self), "simulation_revision": SIMULATION_REVISION}
        )


@functools.lru_cache(maxsize=2)
def _data(dataset: str, data_source: str, n_train: int, n_test: int, seed: int) -> ImageSplit:
    """The spec's training and test subsets (loaded once per process)."""
    if dataset == "digits":
        split = load_digits(seed=seed)
        # digits come as float (N, 1, 8, 8) in [0, 1] already
        full = ImageSplit(
            split.x_train.numpy(),
            split.y_train.numpy(),
            split.x_test.numpy(),
            split.y_test.numpy(),
            tuple(str(k) for k in range(10)),
        )
    elif dataset == "fashion_mnist":
        full = load_fashion_mnist(data_source)
    else:
        full = load_cifar10(data_source)
    rng = np.random.default_rng(derive_seed(seed, "nas_subset"))
    train = rng.permutation(len(full.x_train))[:n_train]
    test = rng.permutation(len(full.x_test))[:n_test]
    return ImageSplit(
        full.x_train[train],
        full.y_train[train],
        full.x_test[test],
        full.y_test[test],
        full.classes,
    )


def evaluate_candidate(spec: CandidateSpec, config: dict[str, Any]) -> dict[str, Any]:
    """Train, HWA-train, program and drift one configuration (see the module docstring).

    Args:
        spec: The recipe.
        config: A ResNet-like configuration, or ``{"baseline": name}`` for a network of
            :data:`BASELINES` trained the same way.

    Returns:
        A JSON-able record: the configuration's features (0 for a baseline), ``model``,
        ``parameters``, ``tiles``,
        ``fp_accuracy``, ``acc_<t>`` and ``std_<t>`` for every time (fractions), ``avm``
        (``acc`` at the first time minus the last, points) and ``seconds``.
    """
    start = time.perf_counter()
    data = _data(spec.dataset, spec.data_source, spec.n_train, spec.n_test, spec.seed)
    in_channels = int(data.x_train.shape[1])
    mean, std = channel_stats(data.x_train)
    transform = ImageBatchTransform(mean, std)
    train_loader = make_image_loader(
        data.x_train,
        data.y_train,
        spec.batch_size,
        transform,
        shuffle=True,
        seed=derive_seed(spec.seed, "nas_shuffle"),
    )
    test_loader = make_image_loader(data.x_test, data.y_test, 500, transform)
    num_classes = len(data.classes)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(spec.seed, "nas_init"))
        if "baseline" in config:
            model: torch.nn.Module = BASELINES[config["baseline"]](num_classes, in_channels)
            n_parameters = sum(p.numel() for p in model.parameters())
        else:
            model = AnalogNASResNet(config, in_channels, num_classes)
            n_parameters = parameter_count(config, in_channels, num_classes)
    fit(model, train_loader, spec.epochs_fp, spec.lr_fp, seed=spec.seed, progress=False)
    model.eval()
    fp_accuracy = accuracy(model, test_loader)

    pcm = standard_hwa_2023()
    pcm.mapping.max_input_size = spec.max_input_size
    pcm.mapping.max_output_size = spec.max_input_size  # square tiles, as the 256x256 cores
    pcm.modifier.type = "pcm_noise"
    pcm.modifier.std_dev = spec.modifier_std
    analog = convert_to_analog(model, pcm)
    set_forward_seed(analog, derive_seed(spec.seed, "nas_hwa_forward"))
    ramp = ModifierRamp(spec.ramp_steps)
    ramp.start(analog)

    def after_step(trained: torch.nn.Module) -> None:
        post_update_step(trained)
        ramp(trained)

    fit(
        analog,
        train_loader,
        spec.epochs_hwa,
        spec.lr_hwa,
        seed=derive_seed(spec.seed, "hwa"),
        progress=False,
        after_step=after_step,
    )
    set_modifier_strength(analog, 1.0)
    analog.eval()
    results = evaluate(
        analog,
        classification_eval_fn(test_loader),
        spec.t_inferences,
        spec.n_reps,
        derive_seed(spec.seed, "nas_program"),
        drift_compensation=True,
        progress=False,
    )
    stats = results.groupby("t_inference_s")["metric"].agg(["mean", "std"])
    record: dict[str, Any] = {name: config.get(name, 0) for name in FEATURES}
    record.update(
        model=config.get("baseline", "AnalogNASResNet"),
        parameters=n_parameters,
        tiles=int(summary(analog)["tiles"].iloc[-1]),
        fp_accuracy=fp_accuracy,
    )
    for t in spec.t_inferences:
        record[f"acc_{t:g}"] = float(stats.loc[t, "mean"])
        record[f"std_{t:g}"] = float(stats.loc[t, "std"]) if spec.n_reps > 1 else 0.0
    first, last = spec.t_inferences[0], spec.t_inferences[-1]
    record["avm"] = 100 * (record[f"acc_{first:g}"] - record[f"acc_{last:g}"])
    record["seconds"] = time.perf_counter() - start
    return record


def _point(point: tuple[CandidateSpec, dict[str, Any]]) -> dict[str, Any]:
    return evaluate_candidate(*point)


def _config_key(record: dict[str, Any]) -> tuple[Any, ...]:
    name = record.get("baseline", record.get("model", "AnalogNASResNet"))
    if name != "AnalogNASResNet":
        return (name,)
    return tuple(float(record[name]) for name in FEATURES)


def candidate_store(spec: CandidateSpec, path: str | Path | None = None) -> JsonlStore:
    """The resumable results file of ``spec`` (``data/cache/nas/<hash>.jsonl`` by default)."""
    parameters = spec.parameters()
    if path is None:
        path = paths.CACHE / "nas" / f"{key_digest(parameters)}.jsonl"
    return JsonlStore(Path(path), parameters, _config_key, what="candidate evaluation")


def evaluate_candidates(
    configs: Sequence[dict[str, Any]],
    spec: CandidateSpec,
    path: str | Path | None = None,
    executor: Any = None,
    threads: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every configuration not stored yet; return all of them, in ``configs`` order.

    Args:
        configs: ResNet-like configurations, or ``{"baseline": name}`` of :data:`BASELINES`
            (duplicates are evaluated once).
        spec: The training and evaluation recipe.
        path: The results file (default: :func:`candidate_store`'s).
        executor: None, a ``concurrent.futures`` executor or a Dask client
            (:func:`analoglib.parallel.run_points`).
        threads: Torch threads per candidate (see :func:`~analoglib.parallel.run_points`).
        progress: Show a progress bar.

    Returns:
        One row per configuration (see :func:`evaluate_candidate`).
    """
    store = candidate_store(spec, path)
    store.compute_missing(
        _point,
        [(spec, dict(config)) for config in configs],
        lambda item: _config_key(item[1]),
        executor,
        threads=threads,
        progress=progress,
        desc="candidates",
    )
    columns = [*FEATURES, "model", "parameters", "tiles", "fp_accuracy"]
    for t in spec.t_inferences:
        columns += [f"acc_{t:g}", f"std_{t:g}"]
    records = [store.records[_config_key(c)] for c in configs]
    return pd.DataFrame(records, columns=[*columns, "avm", "seconds"])
