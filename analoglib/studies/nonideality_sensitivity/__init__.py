"""Which nonidealities of the standard AIMC model hurt most (Rasch et al. 2023, Figs. 4 and 5).

Notebook: ``notebooks/01_nonideality_sensitivity.ipynb``; paper: Rasch et al.,
"Hardware-aware training for large-scale and diverse deep learning inference workloads using
in-memory computing-based accelerators", Nature Communications 14, 5282 (2023).

Each nonideality of the standard AIMC crossbar model is scaled on its own, relative to its
standard value, while every other one stays at standard. Each setting is characterised by the
MVM error of a random tile and by the normalised accuracy A* of each workload at t = 1 h after
programming. The pieces:

* :mod:`~.registry`: :data:`NONIDEALITIES`, each :class:`Nonideality` with its standard value,
  config mapping, grid kind, direction and family; :func:`default_grids`.
* :mod:`~.runner`: :class:`SweepSpec` and :func:`run_sweep`, resumable (one fsynced JSON line
  per point) and able to spread its points over a Dask cluster (``executor``).
* :mod:`~.analysis`: :func:`summarize`, :func:`tolerance_table`, :func:`a_star_at_mvm_error`,
  :func:`check_findings`, :func:`results_metrics`.
* :mod:`~.plots`: the study's figures.

Every point is seeded independently from ``(seed, workload, nonideality, value, rep)``, so a
resumed or distributed run gives the same table as an uninterrupted one. The MVM error of a
point uses the same random tile, inputs and noise streams for every config (seed from
``(seed, rep)``), so the MVM-error curves are smooth in the scale (common random numbers). The
standard model is evaluated once per workload and repetition (the pseudo-nonideality
``"standard"``) and stands for the standard point of every nonideality's curve.

References:
    Rasch et al. 2023 (sensitivity study, tolerance factors, equal-MVM-error comparison);
    ``docs/model.md#standard-model``, ``docs/model.md#metrics``,
    ``docs/published-results.md#rasch-2023``.
"""

from analoglib.studies.nonideality_sensitivity.analysis import (
    a_star_at_mvm_error,
    baseline,
    check_findings,
    describe_findings,
    expand_standard,
    interpolate_tolerance,
    relative_tolerance_table,
    results_metrics,
    rising_steps,
    summarize,
    tolerance_table,
    tolerance_text,
)
from analoglib.studies.nonideality_sensitivity.plots import (
    plot_a_star_vs_mvm_error,
    plot_sweep_a_star,
    plot_tolerance_heatmap,
)
from analoglib.studies.nonideality_sensitivity.registry import (
    FORMAT_VERSION,
    ISO_ACCURACY,
    KINDS,
    NONIDEALITIES,
    STANDARD,
    Nonideality,
    config_of,
    default_grids,
    get_nonideality,
    registry_table,
)
from analoglib.studies.nonideality_sensitivity.runner import (
    SweepFile,
    SweepSpec,
    evaluate_point,
    point_key,
    point_seed,
    prepare_workload,
    run_sweep,
)

__all__ = [
    "FORMAT_VERSION",
    "ISO_ACCURACY",
    "KINDS",
    "NONIDEALITIES",
    "STANDARD",
    "Nonideality",
    "SweepFile",
    "SweepSpec",
    "a_star_at_mvm_error",
    "baseline",
    "check_findings",
    "config_of",
    "default_grids",
    "describe_findings",
    "evaluate_point",
    "expand_standard",
    "get_nonideality",
    "interpolate_tolerance",
    "plot_a_star_vs_mvm_error",
    "plot_sweep_a_star",
    "plot_tolerance_heatmap",
    "point_key",
    "point_seed",
    "prepare_workload",
    "registry_table",
    "relative_tolerance_table",
    "rising_steps",
    "results_metrics",
    "run_sweep",
    "summarize",
    "tolerance_table",
    "tolerance_text",
]
