"""The in-memory training study of notebook 04: configurations, resumable runs, the floor."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from analoglib.studies import analog_training as study

TINY = study.TrainingSpec(dataset="digits", n_train=60, n_test=40, hidden=(8,), epochs=1)


def test_algorithm_configs_differ_only_where_intended() -> None:
    ttv2 = study.algorithm_config(TINY, study.RunPoint("ttv2")).algorithm
    chopped = study.algorithm_config(TINY, study.RunPoint("c-ttv2")).algorithm
    assert ttv2.in_chop_prob == 0.0 and chopped.in_chop_prob > 0
    assert ttv2.replace(in_chop_prob=chopped.in_chop_prob) == chopped
    scaled = study.algorithm_config(TINY, study.RunPoint("sgd", d2d_factor=0.5)).device
    preset = TINY.device()
    assert scaled.dw_min_dtod == pytest.approx(0.5 * preset.dw_min_dtod)
    offset = study.algorithm_config(TINY, study.RunPoint("agad", reference_std=0.25)).device
    assert offset.reference_std == 0.25
    finer = study.algorithm_config(TINY, study.RunPoint("mp", dw_min_factor=0.1)).device
    assert finer.dw_min == pytest.approx(0.1 * preset.dw_min)
    with pytest.raises(ValueError, match="algorithm"):
        study.RunPoint("adam")


def test_runs_are_stored_and_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "runs.jsonl"
    first = study.run_training(
        TINY, [study.RunPoint("fp"), study.RunPoint("sgd")], path, progress=False
    )
    calls = []
    original = study.train_point

    def counting(spec: study.TrainingSpec, point: study.RunPoint) -> dict:  # type: ignore[type-arg]
        calls.append(point)
        return original(spec, point)

    monkeypatch.setattr(study, "train_point", counting)
    points = [study.RunPoint("fp"), study.RunPoint("sgd"), study.RunPoint("mp")]
    again = study.run_training(TINY, points, path, progress=False)
    assert calls == [study.RunPoint("mp")]  # only the new point ran
    pd.testing.assert_frame_equal(again.iloc[:2], first)
    assert len(path.read_text().splitlines()) == 4  # header and three runs


def test_same_point_same_accuracy() -> None:
    a = study.train_point(TINY, study.RunPoint("c-ttv2", seed=3))
    b = study.train_point(TINY, study.RunPoint("c-ttv2", seed=3))
    assert a["accuracy"] == b["accuracy"]


def test_d2d_tolerance_interpolates_the_first_crossing() -> None:
    results = pd.DataFrame(
        {"d2d_factor": [0.0, 1.0, 2.0, 3.0], "final_accuracy": [0.80, 0.796, 0.784, 0.80]}
    )
    tolerance = study.d2d_tolerance(results)
    # 0.995 at 1.0, 0.98 at 2.0: 0.99 is crossed a third of the way
    assert tolerance["tolerance"] == pytest.approx(1.0 + 1 / 3)
    with pytest.raises(ValueError, match="d2d_factor 0"):
        study.d2d_tolerance(results[results["d2d_factor"] > 0])


def test_pulsed_analog_sgd_lands_on_the_response_prediction() -> None:
    torch.set_num_threads(1)
    _, floors = study.asymmetry_floor([1.0], steps=2000, seed=1)
    floors = floors.set_index("method")
    predicted = floors.loc["Analog SGD", "predicted_floor"]
    for method in ("Analog SGD", "Analog SGD (pulsed)"):
        assert floors.loc[method, "excess_over_digital"] == pytest.approx(predicted, rel=0.25)
    assert (
        floors.loc["Tiki-Taka", "measured_floor"] < 0.2 * floors.loc["Analog SGD", "measured_floor"]
    )
