"""Learning-rate schedules and AdamW in ``fit`` (``analoglib.training.LRSchedule``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import gen
from synthetic import synthetic_workload
from torch import nn

from analoglib.presets import standard_hwa_2023
from analoglib.studies.hwa_retraining import hwa_recipe
from analoglib.training import SCHEDULES, HWARecipe, LRSchedule, TrainRecipe, fit
from analoglib.utils import _Paths
from analoglib.workloads import base, load_workload, train_hwa
from analoglib.workloads import train as workload_train

STEPS = 4  # batches per epoch of the loader below
Loader = list[tuple[torch.Tensor, torch.Tensor]]


def _loader() -> Loader:
    x = torch.randn(STEPS, 8, 5, generator=gen(0))
    y = torch.randint(0, 3, (STEPS, 8), generator=gen(1))
    return list(zip(x, y, strict=True))


def _model() -> nn.Module:
    model = nn.Linear(5, 3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, 5, generator=gen(2)))
        model.bias.zero_()
    return model


class RecordingSGD(torch.optim.SGD):
    """SGD that records the rate of every group at every step (after fit's pre-step hooks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[list[float]] = []

    def step(self, closure: Any = None) -> Any:
        self.seen.append([group["lr"] for group in self.param_groups])
        return super().step(closure)


def _rates(epochs: int, lr: float = 0.1, **kwargs: Any) -> list[float]:
    """The learning rate every optimiser step of ``fit`` runs with."""
    model = _model()
    optimizer = RecordingSGD(model.parameters(), lr=lr)
    fit(model, _loader(), epochs, lr, seed=0, optimizer=optimizer, progress=False, **kwargs)
    return [rates[0] for rates in optimizer.seen]


def _plain_loop(model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int) -> None:
    for _ in range(epochs):
        for x, y in _loader():
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_linear_warmup_rates_are_exact() -> None:
    seen = _rates(2, lr=0.1, warmup_steps=5)
    assert seen[:5] == [0.1 * ((k + 1) / 5) for k in range(5)]  # lr (k + 1) / w, exactly
    assert seen[5:] == [0.1] * 3  # then the constant rate
    constant = _rates(2, lr=0.1, warmup_steps=3, warmup_factor=0.05)
    assert constant == [0.1 * 0.05] * 3 + [0.1] * 5


def test_cosine_is_monotone_and_reaches_the_minimum_at_the_end() -> None:
    epochs, warmup, m = 3, 2, 0.1
    n = epochs * STEPS
    seen = _rates(epochs, lr=0.2, schedule="cosine", warmup_steps=warmup, min_lr_ratio=m)
    assert len(seen) == n
    assert seen[:warmup] == pytest.approx([0.1, 0.2])
    assert all(a >= b for a, b in zip(seen[warmup:], seen[warmup + 1 :], strict=False))
    for k in range(warmup, n):  # m + (1 - m) (1 + cos(pi p)) / 2, p = (k - w) / (n - w)
        p = (k - warmup) / (n - warmup)
        assert seen[k] == pytest.approx(0.2 * (m + (1 - m) * 0.5 * (1 + math.cos(math.pi * p))))
    schedule = LRSchedule("cosine", warmup_steps=warmup, min_lr_ratio=m)
    assert schedule.factor(n, n, STEPS) == pytest.approx(m)  # p = 1 at the end of the run
    assert 0.2 * m < seen[-1] < 0.2 * (m + (1 - m) * (math.pi / (n - warmup)) ** 2 / 4)
    linear = _rates(2, lr=0.1, schedule="linear")
    assert linear == pytest.approx([0.1 * (1 - k / 8) for k in range(8)])


@pytest.mark.parametrize(
    ("options", "per_epoch"),
    [
        ({"step_epochs": 2}, [1.0, 1.0, 0.5, 0.5, 0.25]),
        ({"step_milestones": (1, 4)}, [1.0, 0.5, 0.5, 0.5, 0.25]),
    ],
)
def test_step_decay_drops_at_the_right_epochs(
    options: dict[str, Any], per_epoch: list[float]
) -> None:
    seen = _rates(5, lr=0.1, schedule="step", step_gamma=0.5, **options)
    expected = [0.1 * f for f in per_epoch for _ in range(STEPS)]
    assert seen == pytest.approx(expected, rel=1e-15)  # constant within every epoch


def test_step_decay_and_lr_decay_compose() -> None:
    seen = _rates(3, schedule="step", step_milestones=(2,), lr_decay=0.5)
    assert [seen[e * STEPS] for e in range(3)] == pytest.approx([0.1, 0.05, 0.1 * 0.25 * 0.1])


def test_schedule_scales_each_group_of_a_ready_optimiser_and_restores_it() -> None:
    model = _model()
    optimizer = RecordingSGD(
        [{"params": [model.weight], "lr": 0.2}, {"params": [model.bias], "lr": 0.02}], lr=0.2
    )
    fit(model, _loader(), 1, 1.0, seed=0, optimizer=optimizer, progress=False, warmup_steps=2)
    seen = [rate for rates in optimizer.seen[:3] for rate in rates]
    assert seen == pytest.approx([0.1, 0.01, 0.2, 0.02, 0.2, 0.02])
    assert [group["lr"] for group in optimizer.param_groups] == [0.2, 0.02]  # stored rates
    assert all("base_lr" not in group for group in optimizer.param_groups)


def test_default_fit_is_a_plain_loop() -> None:
    """No schedule: bit for bit the hand-written loop, for every optimiser name."""
    for name, make in (
        ("adam", lambda p: torch.optim.Adam(p, lr=0.01)),
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)),
    ):
        model, reference = _model(), _model()
        fit(model, _loader(), 2, 0.01, seed=0, optimizer=name, progress=False)
        _plain_loop(reference, make(reference.parameters()), 2)
        assert _same_weights(model, reference), name


def test_adamw_decouples_the_weight_decay() -> None:
    adamw, adam, reference = _model(), _model(), _model()
    fit(adamw, _loader(), 1, 0.01, seed=0, optimizer="adamw", weight_decay=0.1, progress=False)
    fit(adam, _loader(), 1, 0.01, seed=0, optimizer="adam", weight_decay=0.1, progress=False)
    _plain_loop(reference, torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1), 1)
    assert _same_weights(adamw, reference)
    assert not torch.allclose(adamw.weight, adam.weight)


def test_a_resumed_run_continues_the_schedule_bit_for_bit() -> None:
    options: dict[str, Any] = {
        "schedule": "cosine",
        "warmup_steps": 3,
        "min_lr_ratio": 0.05,
        "lr_decay": 0.9,
    }
    whole = _model()
    optimizer = torch.optim.SGD(whole.parameters(), lr=0.2, momentum=0.9)
    fit(whole, _loader(), 3, 0.2, seed=0, optimizer=optimizer, progress=False, **options)

    # As train_hwa: one call per epoch; after epoch 1 the run stops and resumes from a
    # checkpoint (state dicts loaded into a fresh model and optimiser).
    first = _model()
    optimizer = torch.optim.SGD(first.parameters(), lr=0.2, momentum=0.9)
    fit(first, _loader(), 1, 0.2, seed=0, optimizer=optimizer, progress=False,
        start_epoch=0, total_epochs=3, **options)  # fmt: skip
    checkpoint = {"model": first.state_dict(), "optimizer": optimizer.state_dict()}
    resumed = _model()
    resumed.load_state_dict(checkpoint["model"])
    optimizer = torch.optim.SGD(resumed.parameters(), lr=0.2, momentum=0.9)
    optimizer.load_state_dict(checkpoint["optimizer"])
    for epoch in (1, 2):
        fit(resumed, _loader(), 1, 0.2, seed=0, optimizer=optimizer, progress=False,
            start_epoch=epoch, total_epochs=3, **options)  # fmt: skip
    assert _same_weights(resumed, whole)

    # Without start_epoch and total_epochs every call restarts the warm-up: another result.
    restarted = _model()
    optimizer = torch.optim.SGD(restarted.parameters(), lr=0.2, momentum=0.9)
    for _ in range(3):
        fit(restarted, _loader(), 1, 0.2, seed=0, optimizer=optimizer, progress=False, **options)
    assert not torch.equal(restarted.weight, whole.weight)


_PROFILES = {p: {"hidden": 8, "epochs": 1} for p in ("smoke", "default", "paper")}


@base.register("unit_test_schedules", _PROFILES)
def _build(parameters: dict[str, Any]) -> base.Workload:
    return synthetic_workload("unit_test_schedules", parameters, 64, 6, shuffle=True)


def test_train_hwa_resumes_a_scheduled_run_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_hwa calls fit once per epoch and resumes from an epoch checkpoint."""
    monkeypatch.setattr(base, "paths", _Paths(tmp_path))
    config = standard_hwa_2023()
    recipe = HWARecipe(epochs=3, lr=0.05, optimizer="sgd", schedule="cosine", warmup_steps=3)
    optimizers: list[RecordingSGD] = []

    def recording_optimizer(name: str, params: Any, lr: float, weight_decay: float) -> Any:
        optimizers.append(RecordingSGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay))
        return optimizers[-1]

    monkeypatch.setattr(workload_train, "make_optimizer", recording_optimizer)
    full = train_hwa(load_workload("unit_test_schedules", "smoke"), config, recipe, progress=False)
    n = 3 * STEPS  # 64 samples in batches of 16
    expected = [0.05 * recipe.lr_schedule.factor(k, n, STEPS) for k in range(n)]
    assert [rates[0] for rates in optimizers[0].seen] == pytest.approx(expected)  # one schedule
    path = workload_train.hwa_cache_path(load_workload("unit_test_schedules", "smoke"), config,
                                         recipe)  # fmt: skip
    path.unlink()
    real_fit, calls = workload_train.fit, []

    def interrupted_fit(*args: Any, **kwargs: Any) -> list[float]:
        calls.append(kwargs["start_epoch"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(workload_train, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):  # stops in epoch 1: the checkpoint holds epoch 0
        train_hwa(load_workload("unit_test_schedules", "smoke"), config, recipe, progress=False)
    monkeypatch.setattr(workload_train, "fit", real_fit)
    resumed = train_hwa(
        load_workload("unit_test_schedules", "smoke"), config, recipe, progress=False
    )
    assert calls == [0, 1]
    assert [rates[0] for rates in optimizers[-1].seen] == pytest.approx(expected[STEPS:])
    assert _same_weights(resumed, full)


def test_a_schedule_name_and_an_lr_schedule_are_the_same() -> None:
    by_name, by_object = _model(), _model()
    fit(by_name, _loader(), 2, 0.1, seed=0, optimizer="sgd", progress=False,
        schedule="step", step_epochs=1, warmup_steps=2)  # fmt: skip
    fit(by_object, _loader(), 2, 0.1, seed=0, optimizer="sgd", progress=False,
        schedule=LRSchedule("step", warmup_steps=2, step_epochs=1))  # fmt: skip
    assert _same_weights(by_name, by_object)


def test_recipe_carries_the_schedule() -> None:
    recipe = TrainRecipe.from_parameters(
        {
            "epochs": 3,
            "lr": 0.1,
            "optimizer": "adamw",
            "schedule": "step",
            "step_milestones": [1, 2],
            "step_gamma": 0.5,
            "unrelated": 1,
        }
    )
    assert recipe.lr_schedule == LRSchedule("step", step_milestones=(1, 2), step_gamma=0.5)
    assert recipe.step_milestones == (1, 2)  # a YAML list becomes a tuple
    assert TrainRecipe(epochs=1, lr=0.1).lr_schedule == LRSchedule()
    assert set(SCHEDULES) == {"constant", "linear", "cosine", "step"}


def test_paper_recipes_follow_their_papers() -> None:
    """Rasch 2023 ResNet-32: x1/20 in epochs 0-1, x0.1 from 300, x0.01 from 500 (391 steps)."""
    cnn = hwa_recipe("cnn", "paper")[0]
    assert (cnn.optimizer, cnn.lr, cnn.weight_decay, cnn.epochs) == ("sgd", 7.5e-3, 1e-3, 600)
    schedule, n = cnn.lr_schedule, 600 * 391
    factors = {e: schedule.factor(e * 391, n, 391) for e in (0, 1, 2, 299, 300, 499, 500, 599)}
    assert factors == pytest.approx(
        {0: 0.05, 1: 0.05, 2: 1.0, 299: 1.0, 300: 0.1, 499: 0.1, 500: 0.01, 599: 0.01}
    )
    assert schedule.factor(2 * 391 - 1, n, 391) == 0.05
    transformer = hwa_recipe("transformer", "paper")[0]  # Lammie 2024: AdamW, lr 5e-5, 20 epochs
    assert (transformer.optimizer, transformer.lr, transformer.epochs) == ("adamw", 5e-5, 20)
    assert (transformer.schedule, transformer.warmup_steps) == ("linear", 138)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"schedule": "exponential"}, "schedule = 'exponential'"),
        ({"schedule": None}, "schedule = None"),
        ({"warmup_steps": -1}, "warmup_steps = -1"),
        ({"warmup_steps": 2.5}, "warmup_steps = 2.5"),
        ({"warmup_factor": 0.1}, "warmup_factor = 0.1"),  # without warm-up steps
        ({"warmup_steps": 2, "warmup_factor": 1.5}, "warmup_factor = 1.5"),
        ({"schedule": "cosine", "min_lr_ratio": 1.5}, "min_lr_ratio = 1.5"),
        ({"min_lr_ratio": 0.1}, "min_lr_ratio = 0.1"),  # unused by "constant"
        ({"schedule": "step"}, "step_epochs = 0"),
        ({"schedule": "step", "step_epochs": -1}, "step_epochs = -1"),
        ({"schedule": "step", "step_epochs": 2, "step_milestones": (3,)}, "step_epochs = 2"),
        ({"schedule": "step", "step_milestones": (3, 2)}, "step_milestones = \\(3, 2\\)"),
        ({"schedule": "step", "step_milestones": (0,)}, "step_milestones = \\(0,\\)"),
        ({"schedule": "step", "step_epochs": 1, "step_gamma": 0.0}, "step_gamma = 0.0"),
        ({"schedule": "cosine", "step_epochs": 3}, "step_epochs = 3"),  # unused by "cosine"
        ({"schedule": LRSchedule(), "warmup_steps": 2}, "warmup_steps = 2"),
        ({"start_epoch": -1}, "start_epoch = -1"),
        ({"total_epochs": 1, "start_epoch": 1}, "total_epochs = 1"),
        ({"lr_decay": 0.0}, "lr_decay = 0.0"),
        ({"optimizer": "lamb"}, "optimizer = 'lamb'"),
    ],
)
def test_bad_fit_arguments_raise_naming_the_parameter(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        fit(_model(), _loader(), 1, 0.1, seed=0, progress=False, **options)


def test_bad_recipes_raise_and_unsized_loaders_need_max_steps() -> None:
    with pytest.raises(ValueError, match="optimizer = 'lamb'"):
        TrainRecipe(epochs=1, lr=0.1, optimizer="lamb")
    with pytest.raises(ValueError, match="step_epochs = 0"):
        TrainRecipe(epochs=1, lr=0.1, schedule="step")
    with pytest.raises(ValueError, match="schedule = 'warm'"):
        TrainRecipe(epochs=1, lr=0.1, schedule="warm")
    unsized = (batch for batch in _loader())
    with pytest.raises(ValueError, match="max_steps = 0"):
        fit(_model(), unsized, 1, 0.1, seed=0, progress=False, schedule="cosine")
    # With max_steps the schedule knows the epoch length.
    model = _model()
    optimizer = RecordingSGD(model.parameters(), lr=0.1)
    fit(model, (b for b in _loader()), 1, 0.1, seed=0, optimizer=optimizer, progress=False,
        schedule="linear", max_steps=STEPS)  # fmt: skip
    assert [r[0] for r in optimizer.seen] == pytest.approx([0.1, 0.075, 0.05, 0.025])
