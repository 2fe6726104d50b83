"""Learning-rate schedules and AdamW in ``fit`` (``analoglib.training.LRSchedule``)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import gen
from torch import nn

from analoglib.training import LRSchedule, TrainRecipe, fit

STEPS = 4  # batches per epoch of the loader below


def _loader() -> list[tuple[torch.Tensor, torch.Tensor]]:
    x = torch.randn(STEPS, 8, 5, generator=gen(0))
    y = torch.randint(0, 3, (STEPS, 8), generator=gen(1))
    return list(zip(x, y, strict=True))


def _model() -> nn.Module:
    model = nn.Linear(5, 3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, 5, generator=gen(2)))
        model.bias.zero_()
    return model


def _run(schedule: LRSchedule, epochs: int, lr: float = 0.1, **kwargs: object) -> list[float]:
    """The learning rate every optimiser step of ``fit`` runs with."""
    seen: list[float] = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure: object = None) -> object:  # type: ignore[override]
            seen.append(self.param_groups[0]["lr"])  # after fit's pre-step hooks
            return super().step(closure)  # type: ignore[arg-type]

    model = _model()
    optimizer = RecordingSGD(model.parameters(), lr=lr)
    fit(model, _loader(), epochs, lr, seed=0, optimizer=optimizer, progress=False,
        schedule=schedule, **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return seen


def test_schedule_factors_follow_their_formulas() -> None:
    warm = LRSchedule("constant", warmup_steps=4)
    assert [warm.factor(k, 20, STEPS) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = LRSchedule("cosine", warmup_steps=2, min_lr_ratio=0.1)
    values = [cosine.factor(k, 12, STEPS) for k in range(12)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == pytest.approx(1.0)
    for k in range(2, 12):  # m + (1 - m) (1 + cos(pi p)) / 2, p = (k - 2) / 10
        expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (k - 2) / 10))
        assert values[k] == pytest.approx(expected, abs=1e-15)
    assert all(a >= b for a, b in zip(values[1:], values[2:], strict=False))  # monotone
    assert cosine.factor(12, 12, STEPS) == pytest.approx(0.1)  # the end of the run
    linear = LRSchedule("linear", min_lr_ratio=0.0)
    assert [linear.factor(k, 4, STEPS) for k in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    step = LRSchedule("step", decay_epochs=(2, 3), decay_gamma=0.5)
    per_epoch = [step.factor(e * STEPS, 100, STEPS) for e in range(5)]
    assert per_epoch == [1.0, 1.0, 0.5, 0.25, 0.25]
    assert step.factor(2 * STEPS - 1, 100, STEPS) == 1.0  # last step of epoch 1


def test_fit_runs_every_step_at_the_scheduled_rate() -> None:
    schedule = LRSchedule("cosine", warmup_steps=3, min_lr_ratio=0.0)
    seen = _run(schedule, epochs=3)
    total = 3 * STEPS
    assert seen == pytest.approx([0.1 * schedule.factor(k, total, STEPS) for k in range(total)])
    assert seen[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])


def test_step_decay_and_lr_decay_compose() -> None:
    seen = _run(LRSchedule("step", decay_epochs=(2,), decay_gamma=0.1), epochs=3, lr_decay=0.5)
    per_epoch = [seen[e * STEPS] for e in range(3)]
    assert per_epoch == pytest.approx([0.1, 0.05, 0.1 * 0.25 * 0.1])


def test_resumed_run_continues_the_schedule_bit_for_bit() -> None:
    schedule = LRSchedule("cosine", warmup_steps=2, min_lr_ratio=0.05)
    whole = _model()
    opt = torch.optim.SGD(whole.parameters(), lr=0.2, momentum=0.9)
    fit(whole, _loader(), 3, 0.2, seed=0, optimizer=opt, progress=False, schedule=schedule)
    split = _model()
    opt = torch.optim.SGD(split.parameters(), lr=0.2, momentum=0.9)
    for epoch in range(3):
        fit(split, _loader(), 1, 0.2, seed=0, optimizer=opt, progress=False, schedule=schedule,
            start_epoch=epoch, total_epochs=3)  # fmt: skip
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        assert torch.equal(a, b)
    # Without start_epoch each call would restart the warm-up: a different result.
    restarted = _model()
    opt = torch.optim.SGD(restarted.parameters(), lr=0.2, momentum=0.9)
    for _ in range(3):
        fit(restarted, _loader(), 1, 0.2, seed=0, optimizer=opt, progress=False,
            schedule=schedule)  # fmt: skip
    assert not torch.equal(restarted.weight, whole.weight)


def test_default_fit_is_a_plain_loop() -> None:
    """No schedule, Adam: bit for bit the hand-written loop (nothing else changes the rate)."""
    model, reference = _model(), _model()
    fit(model, _loader(), 2, 0.01, seed=0, progress=False)
    opt = torch.optim.Adam(reference.parameters(), lr=0.01)
    for _ in range(2):
        for x, y in _loader():
            opt.zero_grad()
            nn.functional.cross_entropy(reference(x), y).backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_adamw_decouples_the_weight_decay() -> None:
    adamw, adam, reference = _model(), _model(), _model()
    fit(adamw, _loader(), 1, 0.01, seed=0, optimizer="adamw", weight_decay=0.1, progress=False)
    fit(adam, _loader(), 1, 0.01, seed=0, optimizer="adam", weight_decay=0.1, progress=False)
    opt = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1)
    for x, y in _loader():
        opt.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()
    assert torch.equal(adamw.weight, reference.weight)
    assert not torch.allclose(adamw.weight, adam.weight)


def test_recipe_carries_the_schedule() -> None:
    recipe = TrainRecipe.from_parameters(
        {
            "epochs": 3,
            "lr": 0.1,
            "optimizer": "adamw",
            "schedule": "step",
            "decay_epochs": [1, 2],
            "decay_gamma": 0.5,
        }  # fmt: skip
    )
    assert recipe.lr_schedule == LRSchedule("step", decay_epochs=(1, 2), decay_gamma=0.5)
    assert recipe.decay_epochs == (1, 2)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kind": "exponential"}, "schedule"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"kind": "step"}, "decay_epochs"),
        ({"kind": "step", "decay_epochs": (3, 2)}, "decay_epochs"),
        ({"decay_gamma": 0.0}, "decay_gamma"),
    ],
)
def test_bad_schedules_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LRSchedule(**kwargs)  # type: ignore[arg-type]


def test_bad_fit_arguments_raise() -> None:
    with pytest.raises(ValueError, match="optimizer = 'lamb'"):
        TrainRecipe(epochs=1, lr=0.1, optimizer="lamb")
    with pytest.raises(ValueError, match="start_epoch"):
        fit(_model(), _loader(), 1, 0.1, seed=0, progress=False, start_epoch=-1)
    unsized = (batch for batch in _loader())
    with pytest.raises(ValueError, match="max_steps"):
        fit(_model(), unsized, 1, 0.1, seed=0, progress=False, schedule=LRSchedule("cosine"))
