"""Post-training range optimisation on GLUE (Lammie et al. 2024), as an experiment.

Notebook: ``notebooks/03_glue_post_training.ipynb``; paper: Lammie et al., "Improving the
accuracy of analog-based in-memory computing accelerators post-training", IEEE ISCAS 2024.

After HWA fine-tuning (with input ranges initialised from data and then fixed, or learned), the
study compares a model evaluated ideally, as trained, and after the post-training (PT)
optimisations of this package: per-tile input-range calibration
(:func:`~analoglib.optim.calibrate_input_ranges`) and column conductance-range optimisation
(:func:`~analoglib.optim.optimize_conductance_ranges`), both run before programming. The
per-tile weight clip applied before deployment is a parameter (``clip_sigma``): a sweep over it
on a held-out selection split shows how much of the fixed-range loss and of the PT gains depend
on it, and chooses the clip and the input-range percentile K that the separate test split then
reports. Every configuration is evaluated over programming repetitions; each result is cached
as soon as it is finished, so an interrupted study resumes without repeating finished points.

References:
    Lammie et al. 2024; ``docs/model.md#recipe-lammie``, ``docs/model.md#post-training``,
    ``docs/model.md#pt-study-choices``, ``docs/published-results.md#lammie-2024``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from analoglib.cache import atomic_save
from analoglib.config import ClipParameters, PCMConfig
from analoglib.inference import evaluate
from analoglib.nn.convert import analog_layers, convert_to_digital
from analoglib.optim.conductance_range import optimize_conductance_ranges
from analoglib.optim.input_range import calibrate_input_ranges
from analoglib.parallel import run_points
from analoglib.plotting import subplots
from analoglib.presets import lammie_2024
from analoglib.studies.common import calibration_batches
from analoglib.training.hwa import HWARecipe, clip_weights, remap_weights
from analoglib.workloads import (
    Workload,
    cache_path,
    cached_metrics,
    load_workload,
    train_fp,
    train_hwa,
)

__all__ = [
    "compute_configuration",
    "PT_CONFIGURATIONS",
    "PUBLISHED_LAMMIE_2024",
    "SWEEP_CONFIGURATIONS",
    "EvalSplit",
    "PTConfiguration",
    "PostTrainingSettings",
    "TaskResult",
    "best_and_worst",
    "calibration_batches",
    "choose_value",
    "clip_label",
    "clip_sweep",
    "deploy_clip",
    "findings",
    "hwa_models",
    "percentile_sweep",
    "plot_clip_sweep",
    "sweep_table",
    "training_movement",
    "comparison_table",
    "concat_results",
    "configuration_labels",
    "configurations",
    "evaluate_configuration",
    "hwa_config",
    "plot_configuration_scores",
    "report_overview",
    "results_metrics",
    "run_task",
    "scores_at",
    "scores_over_time",
    "with_scores",
]

log = logging.getLogger(__name__)

#: GLUE averages of Lammie et al. 2024 at t = 1 h over 10 repetitions, per configuration
#: (``docs/published-results.md#lammie-2024``). The single-method PT rows are only known as the
#: spread of
#: the PT-only variants.
PUBLISHED_LAMMIE_2024: dict[str, str] = {
    "ideal": "85.9",
    "constant": "-",
    "fixed": "76.3",
    "pt_input": "80.9-81.7 (PT-only spread)",
    "pt_conductance": "80.9-81.7 (PT-only spread)",
    "pt_both": "81.6",
    "learned": "~81.7",
    "learned_pt": "82.6",
}
#: The single published values of :data:`PUBLISHED_LAMMIE_2024`, drawn on the figures.
PUBLISHED_VALUES: dict[str, float] = {
    "ideal": 85.9,
    "fixed": 76.3,
    "pt_both": 81.6,
    "learned": 81.7,
    "learned_pt": 82.6,
}


@dataclass(frozen=True)
class PTConfiguration:
    """One configuration of the study.

    Attributes:
        name: Key (also of :data:`PUBLISHED_LAMMIE_2024`).
        label: Human-readable name.
        training: ``"fixed"`` or ``"learned"``: which HWA fine-tuning it starts from.
        input_range: Calibrate the input ranges after training.
        conductance: Optimise the column conductance ranges after training.
        ideal: Evaluate the trained weights digitally (no noise, no programming).
        constant_range: Reset every input range to the preset's initial value (3.0) before
            programming, the reading of "fixed ranges" as a constant.
    """

    name: str
    label: str
    training: str
    input_range: bool = False
    conductance: bool = False
    ideal: bool = False
    constant_range: bool = False


#: The configurations of Lammie et al. 2024, in the order of its table.
PT_CONFIGURATIONS: tuple[PTConfiguration, ...] = (
    PTConfiguration("ideal", "ideal (HWA weights, no noise)", "fixed", ideal=True),
    PTConfiguration("constant", "constant ranges 3.0, no tuning", "fixed", constant_range=True),
    PTConfiguration("fixed", "fixed ranges (from data), no tuning", "fixed"),
    PTConfiguration("pt_input", "PT input range", "fixed", input_range=True),
    PTConfiguration("pt_conductance", "PT conductance range", "fixed", conductance=True),
    PTConfiguration("pt_both", "PT input + conductance", "fixed", True, True),
    PTConfiguration("learned", "ranges learned in training", "learned"),
    PTConfiguration("learned_pt", "learned, then PT-optimised", "learned", True, True),
)
#: The configurations of the clip sweep (fixed-range training, each PT method alone and both).
SWEEP_CONFIGURATIONS: tuple[str, ...] = ("ideal", "fixed", "pt_input", "pt_conductance", "pt_both")


@dataclass(frozen=True)
class EvalSplit:
    """A contiguous part of the validation set, in evaluation batches.

    Attributes:
        name: ``"selection"`` (where settings are chosen) or ``"test"`` (where they are
            reported).
        skip_batches: Validation batches before the split.
        max_batches: Batches of the split (0: all that follow).
    """

    name: str
    skip_batches: int = 0
    max_batches: int = 0

    def __post_init__(self) -> None:
        for field_name in ("skip_batches", "max_batches"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"{field_name} = {value!r} is not allowed: expected an integer >= 0."
                )

    @classmethod
    def selection_and_test(
        cls, selection_batches: int, test_batches: int = 0
    ) -> tuple[EvalSplit, EvalSplit]:
        """The first ``selection_batches`` batches, and the ``test_batches`` after them."""
        if selection_batches < 1:
            raise ValueError(
                f"selection_batches = {selection_batches!r} is not allowed: expected >= 1."
            )
        return (
            cls("selection", 0, selection_batches),
            cls("test", selection_batches, test_batches),
        )


def clip_label(clip_sigma: float | None) -> str:
    """Display label of a clip setting: ``"2.5 σ"`` or ``"off"``."""
    return "off" if clip_sigma is None else f"{clip_sigma:g} σ"


@dataclass(frozen=True)
class PostTrainingSettings:
    """Arguments of the two PT optimisers and the size of the calibration set.

    Attributes:
        calibration_batches: Training batches (first ones, in order) used for calibration.
        input_percentile: K of the input-range calibration (percent).
        input_max_samples: Input vectors sampled per tile for the percentile.
        conductance_n_std: L of the conductance-range optimisation (mean + L std of |z|).
        conductance_fill: Fraction of the ADC bound the predicted column maximum maps to.
        seed: Seed of the input sampling.
    """

    calibration_batches: int = 8
    input_percentile: float = 99.995
    input_max_samples: int = 1000
    conductance_n_std: float = 3.0
    conductance_fill: float = 1.0
    seed: int = 0


def hwa_config(
    learned_ranges: bool,
    init_from_data: int | None = None,
    clip_sigma: float | None = 3.0,
) -> PCMConfig:
    """The :func:`~analoglib.presets.lammie_2024` config of one of the two HWA fine-tunings.

    Args:
        learned_ranges: True: every tile's input range is initialised from data (3 std over
            ``init_from_data`` batches) and then learned by its gradient. False: initialised
            from data in the same way, then kept (aihwkit initialises non-learned ranges from
            data too; the paper's ranges "neither learned nor optimised").
        init_from_data: Training batches of the data initialisation (None: the preset's 100).
        clip_sigma: Per-tile weight clip after every optimiser step, in standard deviations of
            the tile's weights (``layer_gaussian``), or None for no clip.

    Returns:
        A new config.
    """
    config = lammie_2024()
    ranges = config.pre_post.input_range
    ranges.learn_input_range = learned_ranges
    if init_from_data is not None:
        ranges.init_from_data = init_from_data
    config.clip = _clip_parameters(clip_sigma)
    return config


def _clip_parameters(clip_sigma: float | None) -> ClipParameters:
    if clip_sigma is None:
        return ClipParameters(type="none")
    if not (isinstance(clip_sigma, (int, float)) and clip_sigma > 0):
        raise ValueError(
            f"clip_sigma = {clip_sigma!r} is not allowed: expected a number of standard "
            "deviations > 0, or None for no clip."
        )
    return ClipParameters(type="layer_gaussian", sigma=float(clip_sigma))


@torch.no_grad()
def deploy_clip(model: nn.Module, clip_sigma: float | None) -> None:
    """Clip every analog layer's weights per tile at ``clip_sigma`` std, then remap (in place).

    The clip of deployment: weights beyond ``clip_sigma`` standard deviations of their tile's
    weights are cut to that bound, and the layer is remapped (the tile's or column's new
    abs-max maps to g_max), so the remaining weights use more of the conductance range.
    ``None`` leaves the model as it is.
    """
    if clip_sigma is None:
        return
    clip = _clip_parameters(clip_sigma)
    for layer in analog_layers(model):
        layer.config.clip = clip
        clip_weights(layer)
        remap_weights(layer)


def _run_batch(workload: Workload) -> Any:
    def run(model: nn.Module, batch: Any) -> Any:
        return workload.batch_loss(model, batch)

    return run


def evaluate_configuration(
    workload: Workload,
    trained: nn.Module,
    configuration: PTConfiguration,
    settings: PostTrainingSettings,
    t_inferences: Sequence[float],
    n_reps: int,
    seed: int,
    cache_key: Mapping[str, Any],
    clip_sigma: float | None = None,
    split: EvalSplit | None = None,
    recompute: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Build one configuration from a trained model, evaluate it, and cache the result.

    A copy of ``trained`` is clipped for deployment (:func:`deploy_clip`), gets the
    configuration's constant ranges or PT optimisations (input ranges first, then conductance
    ranges, on :func:`calibration_batches`, which come from the training set); it is then
    evaluated on ``split`` of the validation set with
    :func:`analoglib.evaluate` (with global drift compensation) or, for the ideal
    configuration, once digitally. The result is written to the cache at once (atomically)
    and reloaded by a later call with the same arguments.

    Args:
        workload: The transformer workload of one task.
        trained: The HWA-trained analog model (not modified).
        configuration: What to build.
        settings: PT arguments.
        t_inferences: Times after programming (s).
        n_reps: Programming repetitions.
        seed: Base seed of the repetitions.
        cache_key: What identifies ``trained`` (e.g. its HWA config and recipe).
        clip_sigma: Deployment clip (:func:`deploy_clip`; None: none).
        split: Part of the validation set evaluated (None: the workload's own evaluation).
        recompute: Ignore a cached result.
        progress: Show progress bars.

    Returns:
        ``(results, reports)``: the tidy table of :func:`analoglib.evaluate` (one row per
        repetition and time, with the workload's metrics) plus ``task`` and ``configuration``
        columns (and ``clip``, ``split``), and the report table of each PT optimiser that ran.
    """
    split_key = dataclasses.asdict(split) if split is not None else None
    path = cache_path(
        workload,
        kind="pt_study",
        trained=dict(cache_key),
        configuration=dataclasses.asdict(configuration),
        settings=dataclasses.asdict(settings),
        t_inferences=[float(t) for t in t_inferences],
        n_reps=n_reps,
        seed=seed,
        max_eval_batches=workload.parameters.get("max_eval_batches"),
        clip_sigma=clip_sigma,
        split=split_key,
    )
    if path.exists() and not recompute:
        state = torch.load(path, map_location="cpu", weights_only=False)
        return state["results"], state["reports"]

    model = copy.deepcopy(trained)
    deploy_clip(model, clip_sigma)
    if configuration.constant_range:
        for layer in analog_layers(model):
            layer.input_range.data.fill_(layer.config.pre_post.input_range.init_value)
    batches: list[Any] = []
    if configuration.input_range or configuration.conductance:
        batches = calibration_batches(workload, settings.calibration_batches)
    reports: dict[str, pd.DataFrame] = {}
    if configuration.input_range:
        report = calibrate_input_ranges(
            model,
            batches,
            percentile=settings.input_percentile,
            max_samples=settings.input_max_samples,
            run_batch=_run_batch(workload),
            seed=settings.seed,
        )
        reports[report.method] = report.table
    if configuration.conductance:
        report = optimize_conductance_ranges(
            model,
            batches,
            n_std=settings.conductance_n_std,
            fill=settings.conductance_fill,
            run_batch=_run_batch(workload),
        )
        reports[report.method] = report.table
    eval_fn: Any = workload.evaluate
    if split is not None:
        evaluate_split: Any = workload.evaluate  # the transformer workload's evaluate
        eval_fn = functools.partial(
            evaluate_split, skip_batches=split.skip_batches, max_batches=split.max_batches
        )
    if configuration.ideal:
        metrics = eval_fn(convert_to_digital(model))
        results = pd.DataFrame(
            [{"rep": 0, "seed": seed, "t_inference_s": float(t), **metrics} for t in t_inferences]
        ).assign(drift_compensation=False)
    else:
        results = evaluate(
            model, eval_fn, t_inferences, n_reps, seed, drift_compensation=True, progress=progress
        )
    results = results.assign(
        task=workload.parameters["task"],
        configuration=configuration.name,
        clip=clip_label(clip_sigma),
        split=split.name if split is not None else "validation",
    )
    atomic_save({"results": results, "reports": reports}, path)
    log.info("%s: %s evaluated and cached", workload.parameters["task"], configuration.name)
    return results, reports


@dataclass
class TaskResult:
    """Everything :func:`run_task` produced for one task.

    Attributes:
        task: GLUE task name.
        description: The workload's description (network, data, stand-in or not).
        metric: The task's headline metric.
        fp_metrics: Metrics of the FP model.
        results: Tidy evaluation table of every configuration (``task``, ``configuration``).
        reports: Report tables per configuration and PT method.
        n_tiles: Crossbar tiles of the analog model.
        utilization: Mean utilisation of those tiles.
        chance_score: Score of chance guessing (100 x (1 - chance error)).
    """

    task: str
    description: str
    metric: str
    fp_metrics: dict[str, float]
    results: pd.DataFrame
    reports: dict[str, dict[str, pd.DataFrame]]
    n_tiles: int
    utilization: float
    chance_score: float = float("nan")


@dataclass(frozen=True)
class _TaskArgs:
    """Everything that builds the trained models of one task (picklable, for workers)."""

    task: str
    recipe: HWARecipe
    init_from_data: int | None
    train_clip_sigma: float | None
    workload_profile: str
    data_source: str
    seed: int
    device: str
    workload_overrides: tuple[tuple[str, Any], ...]

    @classmethod
    def build(
        cls,
        task: str,
        recipe: HWARecipe,
        init_from_data: int | None,
        train_clip_sigma: float | None,
        workload_profile: str,
        data_source: str,
        seed: int,
        device: torch.device | str,
        workload_overrides: Mapping[str, Any],
    ) -> _TaskArgs:
        """The arguments of :func:`run_task` and :func:`hwa_models`, normalised."""
        return cls(
            task=task,
            recipe=recipe,
            init_from_data=init_from_data,
            train_clip_sigma=train_clip_sigma,
            workload_profile=workload_profile,
            data_source=data_source,
            seed=seed,
            device=str(torch.device(device)),
            workload_overrides=tuple(sorted(workload_overrides.items())),
        )


@dataclass
class _TaskModels:
    workload: Workload
    fp_metrics: dict[str, float]
    trained: dict[str, tuple[nn.Module, dict[str, Any]]]


def _task_models(
    args: _TaskArgs, trainings: Sequence[str], retrain: bool, progress: bool
) -> _TaskModels:
    """Load the workload of a task and train (or load) its FP and HWA models."""
    workload = load_workload(
        "transformer",
        args.workload_profile,
        args.data_source,
        args.seed,
        task=args.task,
        **dict(args.workload_overrides),
    )
    workload.model.to(args.device)
    fp_model = train_fp(workload, retrain=retrain, progress=progress)
    fp_metrics = cached_metrics(workload) or workload.evaluate(fp_model)
    models = _TaskModels(workload, dict(fp_metrics), {})
    for training in trainings:
        _add_training(models, args, training, retrain, progress)
    return models


def _add_training(
    models: _TaskModels, args: _TaskArgs, training: str, retrain: bool, progress: bool
) -> None:
    """HWA fine-tune (or load) the model of one training (``"fixed"`` or ``"learned"``)."""
    config = hwa_config(training == "learned", args.init_from_data, args.train_clip_sigma)
    model = train_hwa(models.workload, config, args.recipe, retrain=retrain, progress=progress)
    models.trained[training] = (
        model,
        {"config": config.to_dict(), "recipe": dataclasses.asdict(args.recipe)},
    )


#: Trained models of the task a worker process is running (one task at a time).
_WORKER_MODELS: dict[_TaskArgs, _TaskModels] = {}


def _evaluate_trained(
    models: _TaskModels,
    args: _TaskArgs,
    settings: PostTrainingSettings,
    t_inferences: tuple[float, ...],
    n_reps: int,
    clip_sigma: float | None,
    split: EvalSplit | None,
    recompute: bool,
    progress: bool,
    configuration: PTConfiguration,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """:func:`evaluate_configuration` of one configuration on the task's trained model."""
    if configuration.training not in models.trained:
        _add_training(models, args, configuration.training, False, progress)
    model, key = models.trained[configuration.training]
    return evaluate_configuration(
        models.workload,
        model,
        configuration,
        settings,
        t_inferences,
        n_reps,
        args.seed,
        cache_key=key,
        clip_sigma=clip_sigma,
        split=split,
        recompute=recompute,
        progress=progress,
    )


def compute_configuration(
    args: _TaskArgs,
    settings: PostTrainingSettings,
    t_inferences: tuple[float, ...],
    n_reps: int,
    clip_sigma: float | None,
    split: EvalSplit | None,
    recompute: bool,
    configuration: PTConfiguration,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """One configuration of :func:`run_task`, computed wherever this runs (a worker process).

    The worker loads the task's cached FP and HWA models once (:func:`run_task` trains them
    first) and runs :func:`evaluate_configuration`, which caches its result.
    """
    if args not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[args] = _task_models(args, (), False, False)
    models = _WORKER_MODELS[args]
    return _evaluate_trained(
        models,
        args,
        settings,
        t_inferences,
        n_reps,
        clip_sigma,
        split,
        recompute,
        False,
        configuration,
    )


def run_task(
    task: str,
    recipe: HWARecipe,
    settings: PostTrainingSettings,
    t_inferences: Sequence[float],
    n_reps: int,
    *,
    configurations: Sequence[PTConfiguration] = PT_CONFIGURATIONS,
    clip_sigma: float | None = None,
    train_clip_sigma: float | None = 3.0,
    split: EvalSplit | None = None,
    workload_profile: str = "default",
    data_source: str = "offline",
    seed: int = 0,
    init_from_data: int | None = None,
    retrain: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = True,
    executor: Any = None,
    threads: int | None = None,
    **workload_overrides: Any,
) -> TaskResult:
    """The study on one task: FP fine-tuning, two HWA fine-tunings, then every configuration.

    The transformer workload of ``task`` is FP fine-tuned (:func:`analoglib.workloads.train_fp`)
    and HWA fine-tuned under :func:`hwa_config` with data-initialised input ranges that are then
    fixed, and with learned ones
    (:func:`analoglib.workloads.train_hwa`, only the ones the configurations need); then each
    configuration is built and evaluated by :func:`evaluate_configuration`. Every step is
    cached, so a second call (e.g. with other times) only computes what is new. The
    configurations are independent points: with an ``executor`` they run in parallel, each
    worker loading the cached models once.

    Args:
        task: GLUE task (``"sst2"``/``"trec_nli"`` offline, the GLUE tasks on the hub).
        recipe: The HWA fine-tuning recipe.
        settings: PT arguments.
        t_inferences: Times after programming (s).
        n_reps: Programming repetitions.
        configurations: What to evaluate.
        clip_sigma: Deployment clip of every configuration (:func:`deploy_clip`; None: none).
        train_clip_sigma: Per-tile clip during HWA fine-tuning (None: none).
        split: Part of the validation set evaluated (None: the workload's evaluation set).
        workload_profile: Profile of the transformer workload (base of its parameters).
        data_source: ``"offline"`` or ``"hub"``.
        seed: Seed of the workload, the training and the repetitions.
        init_from_data: Batches of the data initialisation of the input ranges (None: 100).
        retrain: Train and evaluate again instead of reloading cached results.
        device: Where the models run.
        progress: Show progress bars.
        executor: None (this process), a ``concurrent.futures.Executor`` or a Dask
            ``distributed.Client`` for the configurations (workers must see the same
            ``data/cache/``).
        threads: Torch threads per configuration in every back end (None: the default).
        **workload_overrides: Parameters of the workload (``model``, ``epochs``, ...).

    Returns:
        The :class:`TaskResult`.
    """
    args = _TaskArgs.build(
        task, recipe, init_from_data, train_clip_sigma, workload_profile, data_source, seed,
        device, workload_overrides,
    )  # fmt: skip
    trainings = list(dict.fromkeys(c.training for c in configurations))
    models = _task_models(args, trainings, retrain, progress)
    times = tuple(float(t) for t in t_inferences)
    results: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]] = {}

    def keep(configuration: PTConfiguration, result: Any) -> None:
        results[configuration.name] = result

    func: Any = functools.partial(
        _evaluate_trained, models, args, settings, times, n_reps, clip_sigma, split, retrain,
        progress,
    )  # fmt: skip
    if executor is not None:
        func = functools.partial(
            compute_configuration, args, settings, times, n_reps, clip_sigma, split, retrain
        )
    run_points(
        func,
        list(configurations),
        keep,
        executor,
        threads=threads,
        progress=progress and executor is not None,
        desc=f"configurations {task}",
    )
    tables = [results[c.name][0] for c in configurations]
    reports = {c.name: results[c.name][1] for c in configurations}
    layers = analog_layers(next(iter(models.trained.values()))[0])
    n_tiles = sum(layer.mapping.n_tiles for layer in layers)
    used = sum(layer.mapping.utilization * layer.mapping.n_tiles for layer in layers)
    return TaskResult(
        task=task,
        description=models.workload.description,
        metric=models.workload.metric,
        fp_metrics=models.fp_metrics,
        results=pd.concat(tables, ignore_index=True),
        reports=reports,
        n_tiles=n_tiles,
        utilization=used / n_tiles,
        chance_score=100.0 * (1.0 - models.workload.chance_error),
    )


def hwa_models(
    task: str,
    recipe: HWARecipe,
    trainings: Sequence[str] = ("fixed", "learned"),
    *,
    train_clip_sigma: float | None = 3.0,
    workload_profile: str = "default",
    data_source: str = "offline",
    seed: int = 0,
    init_from_data: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    **workload_overrides: Any,
) -> tuple[nn.Module, dict[str, nn.Module]]:
    """The FP model of a task and its HWA fine-tunings, as :func:`run_task` builds them (cached).

    Returns:
        ``(fp_model, {training: analog model})``.
    """
    args = _TaskArgs.build(
        task, recipe, init_from_data, train_clip_sigma, workload_profile, data_source, seed,
        device, workload_overrides,
    )  # fmt: skip
    models = _task_models(args, trainings, False, progress)
    return models.workload.model, {name: pair[0] for name, pair in models.trained.items()}


def clip_sweep(
    tasks: Sequence[str],
    recipe: HWARecipe,
    settings: PostTrainingSettings,
    clip_sigmas: Sequence[float | None],
    n_reps: int,
    split: EvalSplit,
    t_inference_s: float = 3600.0,
    **options: Any,
) -> pd.DataFrame:
    """The :data:`SWEEP_CONFIGURATIONS` at every deployment clip, on one split.

    Args:
        tasks: GLUE tasks.
        recipe: HWA fine-tuning recipe.
        settings: PT arguments.
        clip_sigmas: Deployment clips (:func:`deploy_clip`; None: none).
        n_reps: Programming repetitions.
        split: Where to evaluate (the selection split: the sweep chooses the clip).
        t_inference_s: Time after programming (s).
        **options: Further arguments of :func:`run_task` (not ``clip_sigma``).

    Returns:
        The tidy results of every task and clip (column ``clip``, :func:`clip_label`) with
        their ``score`` (:func:`with_scores`).
    """
    runs = [
        run_task(
            task,
            recipe,
            settings,
            [t_inference_s],
            n_reps,
            configurations=configurations(*SWEEP_CONFIGURATIONS),
            clip_sigma=clip_sigma,
            split=split,
            **options,
        )
        for task in tasks
        for clip_sigma in clip_sigmas
    ]
    return pd.concat([_scored(run.results, run) for run in runs], ignore_index=True)


def _scored(results: pd.DataFrame, run: TaskResult) -> pd.DataFrame:
    return with_scores(results, {run.task: run.metric})


def percentile_sweep(
    tasks: Sequence[str],
    recipe: HWARecipe,
    settings: PostTrainingSettings,
    percentiles: Sequence[float],
    n_reps: int,
    split: EvalSplit,
    clip_sigma: float | None,
    t_inference_s: float = 3600.0,
    **options: Any,
) -> pd.DataFrame:
    """PT input-range calibration at every percentile K, on one split.

    Args:
        tasks: GLUE tasks.
        recipe: HWA fine-tuning recipe.
        settings: PT arguments (``input_percentile`` is replaced by each K).
        percentiles: Candidate K (percent).
        n_reps: Programming repetitions.
        split: Where to evaluate.
        clip_sigma: Deployment clip.
        t_inference_s: Time after programming (s).
        **options: Further arguments of :func:`run_task`.

    Returns:
        The tidy results of the ``pt_input`` configuration (column ``percentile``) with their
        ``score`` (:func:`with_scores`).
    """
    tables = []
    for task, percentile in itertools.product(tasks, percentiles):
        run = run_task(
            task,
            recipe,
            dataclasses.replace(settings, input_percentile=float(percentile)),
            [t_inference_s],
            n_reps,
            configurations=configurations("pt_input"),
            clip_sigma=clip_sigma,
            split=split,
            **options,
        )
        tables.append(_scored(run.results, run).assign(percentile=float(percentile)))
    return pd.concat(tables, ignore_index=True)


def choose_value(results: pd.DataFrame, column: str, configuration: str) -> Any:
    """The value of ``column`` at which ``configuration`` has the highest mean ``score``.

    Args:
        results: Tidy results with a ``score`` (:func:`with_scores`), ``configuration`` and
            ``column`` columns (e.g. ``clip`` of :func:`clip_sweep`).
        column: The swept setting.
        configuration: The configuration whose score decides.

    Raises:
        ValueError: If no row has that configuration.
    """
    rows = results[results["configuration"] == configuration]
    if rows.empty:
        raise ValueError(f"configuration = {configuration!r} is not in the results.")
    means = rows.groupby(column, sort=False)["score"].mean()
    return means.idxmax()


def training_movement(fp_model: nn.Module, trained: Mapping[str, nn.Module]) -> pd.DataFrame:
    """How far HWA fine-tuning moved the weights and the input ranges.

    Args:
        fp_model: The FP model the fine-tunings started from.
        trained: HWA-trained analog models by training name (``"fixed"``, ``"learned"``).

    Returns:
        One row per training: ``weight_change`` (relative change of the effective analog
        weights, ||W - W_fp|| / ||W_fp|| over all analog layers), ``range_mean`` (mean input
        range) and, when a ``"fixed"`` training is given, ``range_change`` (relative change
        of its input ranges against those of the ``"fixed"`` training, which were initialised
        from the same data and then kept; 0 for the fixed training itself).
    """
    fp_weights = dict(fp_model.named_parameters())
    rows = []
    fixed_ranges = None
    if "fixed" in trained:
        fixed_ranges = torch.cat([layer.input_range.detach().flatten()
                                  for layer in analog_layers(trained["fixed"])])  # fmt: skip
    for name, model in trained.items():
        change = total = 0.0
        analog = set(analog_layers(model))
        for layer_name, layer in model.named_modules():
            if layer not in analog:
                continue
            reference = fp_weights[f"{layer_name}.weight"].detach()
            change += float((layer.digital_weight().detach() - reference).square().sum())
            total += float(reference.square().sum())
        ranges = torch.cat([layer.input_range.detach().flatten() for layer in analog_layers(model)])
        row: dict[str, Any] = {
            "training": name,
            "weight_change": (change / total) ** 0.5,
            "range_mean": float(ranges.mean()),
        }
        if fixed_ranges is not None:
            row["range_change"] = float((ranges - fixed_ranges).norm() / fixed_ranges.norm())
        rows.append(row)
    return pd.DataFrame(rows).set_index("training")


def with_scores(results: pd.DataFrame, metrics: Mapping[str, str]) -> pd.DataFrame:
    """``results`` with a ``score`` column: each task's headline metric times 100.

    Args:
        results: Tables of :func:`evaluate_configuration` (with a ``task`` column).
        metrics: Headline metric per task (e.g. ``{"sst2": "accuracy"}``).

    Raises:
        ValueError: If a task lacks its metric.
    """
    missing = sorted(set(results["task"]) - set(metrics))
    if missing:
        raise ValueError(f"metrics lacks the task(s) {', '.join(missing)}.")
    scores = pd.Series(0.0, index=results.index)
    for task, metric in metrics.items():
        rows = results["task"] == task
        scores[rows] = 100.0 * results.loc[rows, metric]
    return results.assign(score=scores)


def scores_at(results: pd.DataFrame, t_inference_s: float = 3600.0) -> pd.DataFrame:
    """Mean and std of the ``score`` (:func:`with_scores`) per configuration and task at one time.

    Returns:
        Rows (configuration, task) with ``mean``, ``std`` (sample std over repetitions, 0 for
        one repetition), ``n_reps`` and ``se`` (standard error of the mean over repetitions),
        in the order of the configurations in ``results``.

    Raises:
        ValueError: If no row has that time.
    """
    rows = results[results["t_inference_s"] == float(t_inference_s)]
    if rows.empty:
        raise ValueError(f"t_inference_s = {t_inference_s!r} is not among the evaluated times.")
    return _score_stats(rows.groupby(["configuration", "task"], sort=False)["score"])


def _score_stats(grouped: Any) -> pd.DataFrame:
    """``mean``, ``std`` (0 for one value), ``n_reps`` and ``se`` of grouped scores."""
    table = grouped.agg(mean="mean", std="std", n_reps="count")
    table["std"] = table["std"].fillna(0.0)
    table["se"] = table["std"] / table["n_reps"] ** 0.5
    return table


def best_and_worst(scores: pd.DataFrame, exclude: Sequence[str] = ("ideal",)) -> tuple[str, str]:
    """Configurations with the highest and the lowest mean score averaged over the tasks."""
    average = scores["mean"].groupby(level="configuration", sort=False).mean()
    average = average.drop(index=[c for c in exclude if c in average.index])
    return str(average.idxmax()), str(average.idxmin())


def comparison_table(
    scores: pd.DataFrame, configurations: Sequence[PTConfiguration] = PT_CONFIGURATIONS
) -> pd.DataFrame:
    """Per-task ``mean ± standard error`` scores, their average and the published GLUE average.

    Args:
        scores: Output of :func:`scores_at`.
        configurations: Row order and labels.

    Returns:
        One row per configuration present in ``scores`` (indexed by label): a column per
        task, ``average`` (the mean of the task means) and ``published GLUE average (Lammie
        2024)``.
    """
    tasks = list(pd.unique(scores.index.get_level_values("task")))
    rows = []
    for configuration in configurations:
        if configuration.name not in scores.index.get_level_values("configuration"):
            continue
        part = scores.loc[configuration.name]
        row: dict[str, Any] = {"configuration": configuration.label}
        for task in tasks:
            mean, se = part.loc[task, ["mean", "se"]]
            row[task] = f"{mean:.1f} ± {se:.1f}"
        row["average"] = f"{part['mean'].mean():.1f}"
        row["published GLUE average (Lammie 2024)"] = PUBLISHED_LAMMIE_2024[configuration.name]
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration")


def configuration_labels(
    configurations: Sequence[PTConfiguration] = PT_CONFIGURATIONS,
) -> dict[str, str]:
    """Display label of every configuration key."""
    return {c.name: c.label for c in configurations}


def configurations(*names: str) -> tuple[PTConfiguration, ...]:
    """The configurations of :data:`PT_CONFIGURATIONS` with these keys, in this order.

    Raises:
        ValueError: For an unknown key.
    """
    known = {c.name: c for c in PT_CONFIGURATIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"configuration(s) {', '.join(map(repr, unknown))} not known: expected some of "
            f"{', '.join(map(repr, known))}."
        )
    return tuple(known[n] for n in dict.fromkeys(names))


def concat_results(
    runs: Sequence[TaskResult], configurations: Sequence[str] | None = None
) -> pd.DataFrame:
    """The evaluation tables of several :func:`run_task` results, one after the other.

    Args:
        runs: The results.
        configurations: Keep only these configuration keys (None: all).
    """
    table = pd.concat([run.results for run in runs], ignore_index=True)
    if configurations is not None:
        table = table[table["configuration"].isin(list(configurations))]
    return table.reset_index(drop=True)


def scores_over_time(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the ``score`` per task and configuration (rows) and time (columns)."""
    table = results.groupby(["task", "configuration", "t_inference_s"], sort=False)["score"]
    return table.agg(["mean", "std"]).unstack("t_inference_s")


def report_overview(reports: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Means of the PT report tables per kind of layer (layer names without their block index).

    Args:
        reports: Report table per PT method (``TaskResult.reports[configuration]``).

    Returns:
        One row per kind of layer (e.g. ``roberta.encoder.layer.*.attention.self.query``),
        the input-range columns and the conductance-range columns side by side.
    """
    parts = []
    for method, table in reports.items():
        kind = table["layer"].str.replace(r"\.\d+\.", ".*.", regex=True)
        numeric = table.drop(columns=["layer", "tile"]).select_dtypes("number")
        summary = numeric.groupby(kind, sort=False).mean()
        summary.columns = pd.MultiIndex.from_product([[method], summary.columns])
        parts.append(summary)
    if not parts:
        return pd.DataFrame()
    overview = pd.concat(parts, axis=1)
    overview.index.name = "layers"
    return overview


def results_metrics(
    runs: Sequence[TaskResult],
    scores: pd.DataFrame,
    results_t: pd.DataFrame,
    best: str,
    worst: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Headline numbers of the study for the results JSON.

    Args:
        runs: The test-split runs.
        scores: :func:`scores_at` of the test split.
        results_t: Results of the best and the worst configuration over time.
        best: Best configuration key.
        worst: Worst configuration key.
        extra: More entries (the choices made on the selection split, :func:`findings`, the
            training movement), added as they are.

    Returns:
        ``tasks`` (metric, FP value, tiles per task), ``score_1h`` (mean, std, se per
        configuration and task, and the average over tasks), ``published_glue_average``,
        ``best``/``worst``, ``pt_gain_over_fixed`` (average score of PT input + conductance
        minus that of fixed ranges at 1 h) and ``score_vs_time`` (for the ``best`` and the
        ``worst`` configuration, per task: times in ascending order, mean, std).
    """
    score_1h: dict[str, Any] = {}
    for name in pd.unique(scores.index.get_level_values("configuration")):
        part = scores.loc[name]
        score_1h[str(name)] = {
            **{
                str(task): {
                    "mean": float(row["mean"]),
                    "std": float(row["std"]),
                    "se": float(row.get("se", 0.0)),
                }
                for task, row in part.iterrows()
            },
            "average": float(part["mean"].mean()),
        }
    over_time: dict[str, Any] = {}
    stats = results_t.groupby(["configuration", "task", "t_inference_s"], sort=False)["score"]
    table = stats.agg(["mean", "std"]).fillna(0.0)
    for role, name in (("best", best), ("worst", worst)):
        for task, part in table.loc[name].groupby(level="task", sort=False):
            order = part.index.get_level_values("t_inference_s").argsort()
            part = part.iloc[order]
            over_time.setdefault(role, {})[str(task)] = {
                "t_inference_s": [float(t) for t in part.index.get_level_values("t_inference_s")],
                "mean": part["mean"].tolist(),
                "std": part["std"].tolist(),
            }
    metrics: dict[str, Any] = {
        "tasks": {
            run.task: {
                "metric": run.metric,
                "fp": float(run.fp_metrics[run.metric]),
                "n_tiles": run.n_tiles,
            }
            for run in runs
        },
        "score_1h": score_1h,
        "published_glue_average": dict(PUBLISHED_LAMMIE_2024),
        "best": best,
        "worst": worst,
        "score_vs_time": over_time,
    }
    if "pt_both" in score_1h and "fixed" in score_1h:
        metrics["pt_gain_over_fixed"] = (
            score_1h["pt_both"]["average"] - score_1h["fixed"]["average"]
        )
    metrics.update(extra or {})
    return metrics


def sweep_table(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean ± standard error of the score per configuration (rows) and ``column`` value.

    Args:
        results: Tidy results with ``score`` (:func:`with_scores`), ``configuration`` and
            ``column``, averaged over tasks and repetitions.
        column: The swept setting (``clip`` of :func:`clip_sweep`, ``percentile`` of
            :func:`percentile_sweep`).
    """
    stats = _score_stats(results.groupby(["configuration", column], sort=False)["score"])
    text = stats.apply(lambda row: f"{row['mean']:.1f} ± {row['se']:.1f}", axis=1)
    return text.unstack(column)


def findings(sweep: pd.DataFrame, test_scores: pd.DataFrame, chosen_clip: str) -> dict[str, Any]:
    """The numbers behind the notebook's claims: losses and gains at every clip and on test.

    Args:
        sweep: Clip-sweep results with scores (:func:`clip_sweep`, :func:`with_scores`).
        test_scores: :func:`scores_at` of the test split.
        chosen_clip: The clip label chosen on the selection split.

    Returns:
        ``by_clip``: per clip label, the mean ``ideal``, the ``fixed_loss`` (ideal minus
        fixed) and the ``gain`` of each PT configuration over fixed, with the standard error
        of the paired difference over repetitions; ``test``: the same from the test split
        (averaged over tasks), plus ``learned_gain`` (learned, then PT, minus learned);
        ``chosen_clip``.
    """

    def paired(rows: pd.DataFrame, name: str, base: str) -> tuple[float, float]:
        # Repetition r of every configuration shares its seeds: difference per repetition.
        a = rows[rows["configuration"] == name].groupby(["task", "rep"])["score"].mean()
        b = rows[rows["configuration"] == base].groupby(["task", "rep"])["score"].mean()
        diff = (a - b).dropna()
        se = float(diff.std() / len(diff) ** 0.5) if len(diff) > 1 else 0.0
        return float(diff.mean()), se

    by_clip: dict[str, Any] = {}
    for clip, rows in sweep.groupby("clip", sort=False):
        ideal = float(rows.loc[rows["configuration"] == "ideal", "score"].mean())
        fixed = float(rows.loc[rows["configuration"] == "fixed", "score"].mean())
        by_clip[str(clip)] = {
            "ideal": ideal,
            "fixed": fixed,
            "fixed_loss": ideal - fixed,
            "gain": {
                name: dict(zip(("mean", "se"), paired(rows, name, "fixed"), strict=True))
                for name in ("pt_input", "pt_conductance", "pt_both")
            },
        }
    average = test_scores["mean"].groupby(level="configuration", sort=False).mean()
    test = {str(name): float(value) for name, value in average.items()}
    out: dict[str, Any] = {"by_clip": by_clip, "test": test, "chosen_clip": chosen_clip}
    if "ideal" in test and "fixed" in test:
        out["test_fixed_loss"] = test["ideal"] - test["fixed"]
    for name, base in (("pt_both", "fixed"), ("learned_pt", "learned"), ("learned", "fixed")):
        if name in test and base in test:
            out[f"test_{name}_minus_{base}"] = test[name] - test[base]
    return out


def plot_clip_sweep(
    sweep: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    published: Mapping[str, float] = PUBLISHED_VALUES,
    title: str | None = None,
) -> Figure:
    """Score of each sweep configuration against the deployment clip, with published values.

    Args:
        sweep: Clip-sweep results with scores (:func:`clip_sweep`, :func:`with_scores`).
        labels: Display name per configuration.
        published: Published GLUE averages drawn as dotted lines (Lammie 2024).
        title: Figure title (e.g. the task and the split).

    Returns:
        A single-column figure: mean ± standard error over repetitions (and tasks) per clip.
    """
    clips = list(pd.unique(sweep["clip"]))
    fig, ax = subplots(width="double", height_in=3.0)
    positions = np.arange(len(clips))
    names = [c for c in SWEEP_CONFIGURATIONS if c in set(sweep["configuration"])]
    for k, name in enumerate(names):
        rows = sweep[sweep["configuration"] == name].groupby("clip", sort=False)["score"]
        stats = _score_stats(rows).reindex(clips)
        line = ax.errorbar(
            positions + 0.06 * (k - (len(names) - 1) / 2),
            stats["mean"],
            yerr=stats["se"],
            marker="o",
            capsize=2,
            linestyle="--" if name == "ideal" else "-",
            label=labels.get(name, name) if labels else name,
        )
        if name in published:
            ax.axhline(published[name], color=line[0].get_color(), linestyle=":", linewidth=1.0)
    ax.plot(
        [],
        [],
        color="0.4",
        linestyle=":",
        label="dotted: Lammie et al. 2024\n(RoBERTa-base, GLUE average)",
    )
    ax.set_xticks(positions, [f"clip {c}" for c in clips])
    ax.set_xlabel("Per-tile weight clip before programming (std of the tile's weights)")
    ax.set_ylabel("Score at 1 h (metric × 100); mean ± s.e.")
    if title:
        ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return fig


def plot_configuration_scores(
    scores: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    ylabel: str = "Score at 1 h",
    origin: float = 0.0,
    published: Mapping[str, float] | None = PUBLISHED_VALUES,
    title: str | None = None,
) -> Figure:
    """Mean score (± standard error) of each configuration, one bar per task plus their average.

    Args:
        scores: Rows indexed by ``(configuration, task)`` with ``mean`` and ``se`` (or
            ``std``) columns (:func:`scores_at`).
        labels: Display name per configuration (default: the configuration key).
        ylabel: Label of the score axis.
        origin: Where the bars start (e.g. the chance score), so differences are not
            exaggerated by a cut axis.
        published: Published GLUE averages drawn as black diamonds on the average bars
            (None: none).
        title: Figure title.

    Returns:
        A double-column figure with horizontal bars, the configurations from top to bottom in
        the order of ``scores``.

    Raises:
        ValueError: If ``scores`` lacks the ``mean`` column, an error column or the index
            levels.
    """
    error = "se" if "se" in scores.columns else "std"
    if (
        "mean" not in scores.columns
        or error not in scores.columns
        or list(scores.index.names) != ["configuration", "task"]
    ):
        raise ValueError(
            "scores must be indexed by (configuration, task) with 'mean' and 'se' (or 'std') "
            f"columns; got index {list(scores.index.names)} and columns {list(scores.columns)}."
        )
    configurations = list(pd.unique(scores.index.get_level_values("configuration")))
    tasks = list(pd.unique(scores.index.get_level_values("task")))
    means = scores["mean"].unstack("task").reindex(index=configurations, columns=tasks)
    errors = scores[error].unstack("task").reindex(index=configurations, columns=tasks)
    groups = list(tasks)
    if len(tasks) > 1:
        means["average"] = means.mean(axis=1)
        errors["average"] = 0.0
        groups.append("average")
    fig, ax = subplots(
        width="double", height_in=0.35 * len(configurations) * len(groups) ** 0.5 + 1.2
    )
    height = 0.8 / len(groups)
    positions = np.arange(len(configurations))
    for k, group in enumerate(groups):
        offset = (k - (len(groups) - 1) / 2) * height
        ax.barh(
            positions + offset,
            means[group].to_numpy(dtype=float) - origin,
            left=origin,
            height=height,
            xerr=errors[group].to_numpy(dtype=float),
            label=group if group == "average" else f"{group} (mean ± s.e.)",
            hatch="//" if group == "average" else None,
        )
    if published:
        shown = [(i, published[c]) for i, c in enumerate(configurations) if c in published]
        if shown:
            rows, values = zip(*shown, strict=True)
            ax.scatter(
                values, rows, marker="D", color="black", zorder=3,
                label="Lammie et al. 2024 (RoBERTa-base, GLUE average)",
            )  # fmt: skip
    names = [labels.get(c, c) if labels is not None else c for c in configurations]
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlim(left=origin)
    ax.set_xlabel(ylabel)
    ax.set_ylabel("Configuration")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize="small")
    return fig
