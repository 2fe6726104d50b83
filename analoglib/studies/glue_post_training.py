"""Post-training range optimisation on GLUE (Lammie et al. 2024), built and evaluated.

Notebook: ``notebooks/03_glue_post_training.ipynb``; paper: Lammie et al., "Improving the
accuracy of analog-based in-memory computing accelerators post-training", IEEE ISCAS 2024.

After HWA fine-tuning (with fixed or with learned input ranges), the study compares a model
evaluated ideally, as trained, and after the post-training (PT) optimisations of this package:
per-tile input-range calibration (:func:`~analoglib.optim.calibrate_input_ranges`) and column
conductance-range optimisation (:func:`~analoglib.optim.optimize_conductance_ranges`), both run
before programming. Every configuration is evaluated over programming repetitions at given
times after programming; each result is cached as soon as it is finished, so an interrupted
study resumes without repeating finished configurations.

References:
    Lammie et al. 2024; ``docs/model.md#recipe-lammie``, ``docs/model.md#post-training``,
    ``docs/published-results.md#lammie-2024``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
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
from analoglib.config import PCMConfig
from analoglib.inference import evaluate
from analoglib.nn.convert import analog_layers, convert_to_digital
from analoglib.optim.conductance_range import optimize_conductance_ranges
from analoglib.optim.input_range import calibrate_input_ranges
from analoglib.parallel import run_points
from analoglib.plotting import subplots
from analoglib.presets import lammie_2024
from analoglib.studies.common import calibration_batches
from analoglib.training.hwa import HWARecipe
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
    "PTConfiguration",
    "PostTrainingSettings",
    "TaskResult",
    "best_and_worst",
    "calibration_batches",
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
    "fixed": "76.3",
    "pt_input": "80.9-81.7 (PT-only spread)",
    "pt_conductance": "80.9-81.7 (PT-only spread)",
    "pt_both": "81.6",
    "learned": "~81.7",
    "learned_pt": "82.6",
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
    """

    name: str
    label: str
    training: str
    input_range: bool = False
    conductance: bool = False
    ideal: bool = False


#: The configurations of Lammie et al. 2024, in the order of its table.
PT_CONFIGURATIONS: tuple[PTConfiguration, ...] = (
    PTConfiguration("ideal", "ideal (HWA weights, no noise)", "fixed", ideal=True),
    PTConfiguration("fixed", "fixed ranges, no tuning", "fixed"),
    PTConfiguration("pt_input", "PT input range", "fixed", input_range=True),
    PTConfiguration("pt_conductance", "PT conductance range", "fixed", conductance=True),
    PTConfiguration("pt_both", "PT input + conductance", "fixed", True, True),
    PTConfiguration("learned", "ranges learned in training", "learned"),
    PTConfiguration("learned_pt", "learned, then PT-optimised", "learned", True, True),
)


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


def hwa_config(learned_ranges: bool, init_from_data: int | None = None) -> PCMConfig:
    """The :func:`~analoglib.presets.lammie_2024` config of one of the two HWA fine-tunings.

    Args:
        learned_ranges: True: every tile's input range is initialised from data (3 std over
            ``init_from_data`` batches) and then learned by its gradient. False: the ranges are
            fixed at the preset's initial value (3.0) for every tile, neither initialised from
            data nor learned (the paper's ranges that are "neither learned nor optimised").
        init_from_data: Training batches of the data initialisation of learned ranges (None:
            the preset's 100).

    Returns:
        A new config.
    """
    config = lammie_2024()
    ranges = config.pre_post.input_range
    ranges.learn_input_range = learned_ranges
    if not learned_ranges:
        ranges.init_from_data = 0
    elif init_from_data is not None:
        ranges.init_from_data = init_from_data
    return config


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
    recompute: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Build one configuration from a trained model, evaluate it, and cache the result.

    A copy of ``trained`` gets the configuration's PT optimisations (input ranges first,
    then conductance ranges, on :func:`calibration_batches`); it is then evaluated with
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
        recompute: Ignore a cached result.
        progress: Show progress bars.

    Returns:
        ``(results, reports)``: the tidy table of :func:`analoglib.evaluate` (one row per
        repetition and time, with the workload's metrics) plus ``task`` and ``configuration``
        columns, and the report table of each PT optimiser that ran.
    """
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
    )
    if path.exists() and not recompute:
        state = torch.load(path, map_location="cpu", weights_only=False)
        return state["results"], state["reports"]

    model = copy.deepcopy(trained)
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
    if configuration.ideal:
        metrics = workload.evaluate(convert_to_digital(model))
        results = pd.DataFrame(
            [{"rep": 0, "seed": seed, "t_inference_s": float(t), **metrics} for t in t_inferences]
        ).assign(drift_compensation=False)
    else:
        results = evaluate(
            model,
            workload.evaluate,
            t_inferences,
            n_reps,
            seed,
            drift_compensation=True,
            progress=progress,
        )
    results = results.assign(task=workload.parameters["task"], configuration=configuration.name)
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
    """

    task: str
    description: str
    metric: str
    fp_metrics: dict[str, float]
    results: pd.DataFrame
    reports: dict[str, dict[str, pd.DataFrame]]
    n_tiles: int
    utilization: float


@dataclass(frozen=True)
class _TaskArgs:
    """Everything that builds the trained models of one task (picklable, for workers)."""

    task: str
    recipe: HWARecipe
    init_from_data: int | None
    workload_profile: str
    data_source: str
    seed: int
    device: str
    workload_overrides: tuple[tuple[str, Any], ...]


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
    config = hwa_config(training == "learned", args.init_from_data)
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
        recompute=recompute,
        progress=progress,
    )


def compute_configuration(
    args: _TaskArgs,
    settings: PostTrainingSettings,
    t_inferences: tuple[float, ...],
    n_reps: int,
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
        models, args, settings, t_inferences, n_reps, recompute, False, configuration
    )


def run_task(
    task: str,
    recipe: HWARecipe,
    settings: PostTrainingSettings,
    t_inferences: Sequence[float],
    n_reps: int,
    *,
    configurations: Sequence[PTConfiguration] = PT_CONFIGURATIONS,
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
    and HWA fine-tuned under :func:`hwa_config` with fixed and with learned input ranges
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
    args = _TaskArgs(
        task=task,
        recipe=recipe,
        init_from_data=init_from_data,
        workload_profile=workload_profile,
        data_source=data_source,
        seed=seed,
        device=str(torch.device(device)),
        workload_overrides=tuple(sorted(workload_overrides.items())),
    )
    trainings = list(dict.fromkeys(c.training for c in configurations))
    models = _task_models(args, trainings, retrain, progress)
    times = tuple(float(t) for t in t_inferences)
    results: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]] = {}

    def keep(configuration: PTConfiguration, result: Any) -> None:
        results[configuration.name] = result

    func: Any = functools.partial(
        _evaluate_trained, models, args, settings, times, n_reps, retrain, progress
    )
    if executor is not None:
        func = functools.partial(compute_configuration, args, settings, times, n_reps, retrain)
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
    )


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
        one repetition) and ``n_reps``, in the order of the configurations in ``results``.

    Raises:
        ValueError: If no row has that time.
    """
    rows = results[results["t_inference_s"] == float(t_inference_s)]
    if rows.empty:
        raise ValueError(f"t_inference_s = {t_inference_s!r} is not among the evaluated times.")
    table = rows.groupby(["configuration", "task"], sort=False)["score"].agg(
        mean="mean", std="std", n_reps="count"
    )
    table["std"] = table["std"].fillna(0.0)
    return table


def best_and_worst(scores: pd.DataFrame, exclude: Sequence[str] = ("ideal",)) -> tuple[str, str]:
    """Configurations with the highest and the lowest mean score averaged over the tasks."""
    average = scores["mean"].groupby(level="configuration", sort=False).mean()
    average = average.drop(index=[c for c in exclude if c in average.index])
    return str(average.idxmax()), str(average.idxmin())


def comparison_table(
    scores: pd.DataFrame, configurations: Sequence[PTConfiguration] = PT_CONFIGURATIONS
) -> pd.DataFrame:
    """Per-task ``mean +- std`` scores, their average and the published GLUE average.

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
            mean, std = part.loc[task, ["mean", "std"]]
            row[task] = f"{mean:.1f} +- {std:.1f}"
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
) -> dict[str, Any]:
    """Headline numbers of the study for the results JSON.

    Returns:
        ``tasks`` (metric, FP value, tiles per task), ``score_1h`` (mean, std per
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
                str(task): {"mean": float(row["mean"]), "std": float(row["std"])}
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
    return metrics


def plot_configuration_scores(
    scores: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    ylabel: str = "Score at 1 h",
) -> Figure:
    """Mean score (+- std) of each configuration, one bar per task plus their average.

    Args:
        scores: Rows indexed by ``(configuration, task)`` with ``mean`` and ``std`` columns
            (:func:`scores_at`).
        labels: Display name per configuration (default: the configuration key).
        ylabel: Label of the score axis.

    Returns:
        A double-column figure with horizontal bars, the configurations from top to bottom in
        the order of ``scores``.

    Raises:
        ValueError: If ``scores`` lacks the ``mean`` or ``std`` column or the index levels.
    """
    missing = [c for c in ("mean", "std") if c not in scores.columns]
    if missing or list(scores.index.names) != ["configuration", "task"]:
        raise ValueError(
            "scores must be indexed by (configuration, task) with 'mean' and 'std' columns; "
            f"got index {list(scores.index.names)} and columns {list(scores.columns)}."
        )
    configurations = list(pd.unique(scores.index.get_level_values("configuration")))
    tasks = list(pd.unique(scores.index.get_level_values("task")))
    means = scores["mean"].unstack("task").reindex(index=configurations, columns=tasks)
    stds = scores["std"].unstack("task").reindex(index=configurations, columns=tasks)
    means["average"] = means.mean(axis=1)
    stds["average"] = 0.0
    groups = [*tasks, "average"]
    fig, ax = subplots(
        width="double", height_in=0.35 * len(configurations) * len(groups) ** 0.5 + 1
    )
    height = 0.8 / len(groups)
    positions = np.arange(len(configurations))
    for k, group in enumerate(groups):
        offset = (k - (len(groups) - 1) / 2) * height
        ax.barh(
            positions + offset,
            means[group].to_numpy(dtype=float),
            height=height,
            xerr=stds[group].to_numpy(dtype=float),
            label=group,
            hatch="//" if group == "average" else None,
        )
    names = [labels.get(c, c) if labels is not None else c for c in configurations]
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    lowest = float(np.nanmin(means.to_numpy() - stds.to_numpy()))
    ax.set_xlim(left=max(0.0, lowest - 5.0))
    ax.set_xlabel(ylabel)
    ax.legend(loc="lower right")
    return fig
