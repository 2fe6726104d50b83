"""Workload registry, parameter resolution and the FP checkpoint cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from synthetic import synthetic_workload

import analoglib as al
from analoglib.utils import _Paths
from analoglib.workloads import base
from analoglib.workloads import train as workload_train

PROFILES = {
    "smoke": {"hidden": 8, "epochs": 1},
    "default": {"hidden": 16, "epochs": 2},
    "paper": {"hidden": 32, "epochs": 3},
}
N_TRAIN = 64


@base.register("unit_test_linear", PROFILES)
def _build(parameters: dict[str, Any]) -> base.Workload:
    return synthetic_workload("unit_test_linear", parameters, N_TRAIN, 4, shuffle=False)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the workload cache at a temporary project root."""
    monkeypatch.setattr(base, "paths", _Paths(tmp_path))
    return tmp_path / "data" / "cache"


def test_profiles_overrides_and_recorded_parameters() -> None:
    workload = al.workloads.load_workload("unit_test_linear", "smoke", seed=3, hidden=5)
    assert workload.parameters == {
        "hidden": 5,
        "epochs": 1,
        "profile": "smoke",
        "data_source": "offline",
        "seed": 3,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "nope"}, "workload = 'nope' is not known"),
        ({"profile": "fast"}, "profile = 'fast' is not allowed"),
        ({"data_source": "web"}, "data_source = 'web' is not allowed"),
        ({"seed": 1.5}, "seed = 1.5 is not allowed"),
        ({"widht": 3}, "has no parameter 'widht'"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "unit_test_linear", "profile": "smoke"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        al.workloads.load_workload(**arguments)


def test_register_refuses_profiles_with_different_keys() -> None:
    with pytest.raises(ValueError, match="same parameters"):
        base.register("broken", {"smoke": {"a": 1}, "default": {"a": 1}, "paper": {"b": 1}})
    with pytest.raises(ValueError, match="missing"):
        base.register("broken", {"smoke": {"a": 1}})


def test_checkpoint_is_cached_reused_and_invalidated(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = al.workloads.load_workload("unit_test_linear", "smoke", seed=0)
    al.workloads.train_fp(workload, progress=False)
    path = al.workloads.cache_path(workload)
    assert path.exists() and path.is_relative_to(cache)
    assert workload.evaluate(workload.model)["accuracy"] > 0.8  # trains beyond chance
    trained = {k: v.clone() for k, v in workload.model.state_dict().items()}
    assert al.workloads.cached_metrics(workload) == workload.evaluate(workload.model)

    # Second call: the cached checkpoint is loaded and fit is never called.
    def no_training(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("fit was called although a checkpoint is cached")

    monkeypatch.setattr(workload_train, "fit", no_training)
    again = al.workloads.load_workload("unit_test_linear", "smoke", seed=0)
    al.workloads.train_fp(again, progress=False)
    for key, value in again.model.state_dict().items():
        assert torch.equal(value, trained[key])

    # A changed parameter gives another checkpoint, so it would train anew.
    changed = al.workloads.load_workload("unit_test_linear", "smoke", seed=0, epochs=2)
    assert al.workloads.cache_path(changed) != path
    with pytest.raises(AssertionError, match="fit was called"):
        al.workloads.train_fp(changed, progress=False)
    assert (
        al.workloads.cache_path(al.workloads.load_workload("unit_test_linear", "smoke", seed=1))
        != path
    )


def test_evaluation_only_parameters_do_not_retrain(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = al.workloads.load_workload("cnn", "smoke")
    smaller_eval = al.workloads.load_workload("cnn", "smoke", max_eval_batches=1)
    assert al.workloads.cache_path(smaller_eval) == al.workloads.cache_path(workload)
    al.workloads.train_fp(workload, progress=False)

    def no_training(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("fit was called for an evaluation-only change")

    monkeypatch.setattr(workload_train, "fit", no_training)
    al.workloads.train_fp(smaller_eval, progress=False)
    # The stored metrics belong to the other evaluation subset, so they are not reported.
    assert al.workloads.cached_metrics(workload) is not None
    assert al.workloads.cached_metrics(smaller_eval) is None


def test_interrupted_save_leaves_no_corrupt_checkpoint(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = al.workloads.load_workload("unit_test_linear", "smoke", seed=0)
    path = al.workloads.cache_path(workload)
    real_save = torch.save

    def interrupted_save(obj: object, target: Any, *args: object, **kwargs: object) -> None:
        with open(target, "wb") as handle:  # a partial file, then the interruption
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(base.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        al.workloads.train_fp(workload, progress=False)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # no temporary file left behind either

    # The next run trains and writes a complete, loadable checkpoint.
    monkeypatch.setattr(base.torch, "save", real_save)
    al.workloads.train_fp(al.workloads.load_workload("unit_test_linear", "smoke"), progress=False)
    assert "model" in torch.load(path, weights_only=False)


def test_training_loop_accepts_an_analog_model(cache: Path) -> None:
    workload = al.workloads.load_workload("unit_test_linear", "smoke", seed=0)
    al.workloads.train_fp(workload, progress=False)
    analog = al.convert_to_analog(workload.model, al.presets.standard_hwa_2023())
    history = al.training.fit(
        analog,
        workload.train_loader,
        1,
        0.01,
        seed=0,
        batch_loss=workload.batch_loss,
        progress=False,
    )
    assert len(history) == 1 and history[0] == history[0]  # finite loss
    table = al.evaluate(analog, workload.evaluate, [1.0, 3600.0], 1, seed=0, progress=False)
    assert list(table["t_inference_s"]) == [1.0, 3600.0]
    assert table["accuracy"].between(0, 1).all()


def test_normalized_accuracy_of_a_workload() -> None:
    workload = al.workloads.load_workload("unit_test_linear", "smoke")
    assert workload.normalized_accuracy(0.1, 0.1) == 1.0
    assert workload.normalized_accuracy(0.5, 0.1) == 0.0
