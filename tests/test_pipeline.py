"""Pipeline schedules, partitioning and the exact executor (docs/pipeline.md)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from analoglib.pipeline import (
    MODES,
    AnalogSGD,
    CycleCost,
    DigitalSGD,
    Event,
    PipelineExecutor,
    Schedule,
    TikiTaka,
    UpdateRule,
    build_schedule,
    closed_form_cycles,
    cycles_per_sample,
    makespan,
    partition,
    stage_costs,
    tile_count,
    validate_schedule,
)

MSE = nn.MSELoss()


def _mlp(widths: list[int], seed: int = 0) -> nn.Sequential:
    """Linear layers with Tanh between them (each Linear is one tile, each Tanh costs 0)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


Batches = list[tuple[Tensor, Tensor]]


def _batches(n: int, size: int, d_in: int, d_out: int, seed: int = 1) -> Batches:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, size, d_in, generator=gen)
    y = torch.randn(n, size, d_out, generator=gen)
    # separate tensors: views at odd offsets may take other vectorised paths than fresh ones
    return [(x[j].clone(), y[j].clone()) for j in range(n)]


def _run(model: nn.Sequential, m: int, mode: str, batches: Batches, rule: UpdateRule, b: int = 1):
    executor = PipelineExecutor(partition(model, m), rule, MSE)
    return executor.run(build_schedule(mode, m, len(batches), b), batches)


def _sgd_reference(model: nn.Sequential, groups: list[Batches], lr: float) -> None:
    """Plain torch SGD, one step per group on the union of its micro-batches (mean loss)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, foreach=False)
    for group in groups:
        x = torch.cat([xy[0] for xy in group])
        y = torch.cat([xy[1] for xy in group])
        opt.zero_grad()
        MSE(model(x), y).backward()
        opt.step()


# --- schedules and clock cycles -----------------------------------------------------------


def _expected_cycles(mode: str, m: int, n: int, b: int) -> int:
    if mode == "none":  # one stage busy at a time: F through M stages, B back
        return n * 2 * m
    if mode == "async":  # fill M - 1, one F and one B per micro-batch, drain M - 1
        return 2 * (n + m - 1)
    sizes = [min(b, n - start) for start in range(0, n, b)]
    return sum(2 * (size + m - 1) for size in sizes)


CASES = [(1, 1, 5), (2, 3, 6), (3, 4, 9), (4, 5, 10), (4, 2, 7), (8, 3, 5)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("m", "b", "n"), CASES)
@pytest.mark.parametrize("order", ["gpipe", "1f1b"])
def test_schedules_are_valid_and_match_the_closed_forms(
    mode: str, m: int, b: int, n: int, order: str
) -> None:
    schedule = build_schedule(mode, m, n, b, order)
    validate_schedule(schedule)
    assert schedule.cycles == _expected_cycles(mode, m, n, b)
    assert closed_form_cycles(mode, m, n, b) == schedule.cycles
    assert makespan(schedule) == schedule.cycles


@pytest.mark.parametrize(("m", "b", "n"), [(2, 3, 6), (4, 5, 10), (3, 2, 7)])
def test_executor_cycles_equal_the_closed_forms(m: int, b: int, n: int) -> None:
    batches = _batches(n, 2, 3, 2)
    for mode in MODES:
        result = _run(_mlp([3] * m + [2]), m, mode, batches, DigitalSGD(0.01), b)
        assert result.cycles == _expected_cycles(mode, m, n, b)
        assert result.history[-1]["cycle"] <= result.cycles
        assert [h["samples"] for h in result.history] == [2 * (j + 1) for j in range(n)]


def test_cycles_per_sample_are_the_steady_state_rates() -> None:
    m, b = 4, 5
    for mode in MODES:
        short, long = build_schedule(mode, m, 2 * b, b), build_schedule(mode, m, 6 * b, b)
        rate = (long.cycles - short.cycles) / (4 * b)
        assert rate == cycles_per_sample(mode, m, b)
    # the speed-ups quoted in docs/pipeline.md#clock-cycles
    assert cycles_per_sample("sync", m, b) / cycles_per_sample("async", m, b) == (b + m - 1) / b
    assert cycles_per_sample("none", m, b) / cycles_per_sample("async", m, b) == m


@pytest.mark.parametrize("mode", MODES)
def test_a_slower_backward_scales_every_cycle_count(mode: str) -> None:
    m, b, n = 4, 3, 9
    schedule = build_schedule(mode, m, n, b)
    cost = CycleCost(forward=1, backward=2)
    # every closed form counts (F + B) pairs of cycles: with F = 1 and B = 2 each pair is 3
    assert makespan(schedule, cost) == 1.5 * _expected_cycles(mode, m, n, b)


def test_a_bottleneck_stage_sets_the_async_rate() -> None:
    m, slow = 4, 3.0
    cost = CycleCost(stage_scale=(1.0, slow, 1.0, 1.0))
    spans = [makespan(build_schedule("async", m, n), cost) for n in (20, 21)]
    assert spans[1] - spans[0] == slow * 2  # one F and one B of the slowest stage
    assert makespan(build_schedule("async", m, 20), CycleCost()) < spans[0]


def _with_event(schedule: Schedule, index: int, **change: int) -> Schedule:
    events = list(schedule.events)
    fields = {**events[index].__dict__, **change}
    events[index] = Event(**fields)
    return Schedule(
        schedule.mode,
        schedule.num_stages,
        schedule.num_microbatches,
        schedule.microbatches_per_minibatch,
        schedule.actions,
        events,
    )


def test_broken_schedules_are_refused() -> None:
    # without pipelining most cycles of a stage are free, so one change breaks one rule
    schedule = build_schedule("none", 3, 2)
    index = {(e.op, e.stage, e.micro_batch): i for i, e in enumerate(schedule.events)}
    broken = [
        (_with_event(schedule, index["F", 1, 0], cycle=0), "F of stage 1 before F of stage 0"),
        (_with_event(schedule, index["B", 1, 0], cycle=3), "B of stage 1 before B of stage 2"),
        (_with_event(schedule, index["B", 2, 0], cycle=0), "B of stage 2 before its F"),
        (_with_event(schedule, index["F", 1, 0], cycle=4), "second F/B on stage 1"),
        (_with_event(schedule, index["B", 0, 1], weight_version=0), "weight_version 0"),
    ]
    dropped = copy.copy(schedule)
    dropped.events = [e for e in schedule.events if (e.op, e.stage) != ("B", 0)]
    broken.append((dropped, "2 F/B actions are missing"))
    for bad, message in broken:
        with pytest.raises(ValueError, match=message):
            validate_schedule(bad)


# --- partitioning ---------------------------------------------------------------------------


def test_tile_count_of_linear_and_conv_layers() -> None:
    assert tile_count(nn.Linear(1024, 513)) == 2 * 2
    assert tile_count(nn.Linear(512, 512)) == 1
    assert tile_count(nn.Conv2d(64, 600, kernel_size=3)) == math.ceil(576 / 512) * 2
    assert tile_count(nn.ReLU()) == 0
    assert tile_count(nn.Sequential(nn.Linear(600, 10), nn.Linear(10, 10))) == 3


def test_partition_balances_tiles_and_attaches_free_modules() -> None:
    model = nn.Sequential(
        nn.Flatten(),  # leading zero-cost module: joins the first stage
        nn.Linear(1024, 1024),  # 4 tiles
        nn.ReLU(),
        nn.Linear(1024, 512),  # 2 tiles
        nn.ReLU(),
        nn.Linear(512, 512),  # 1
        nn.Linear(512, 512),  # 1
        nn.ReLU(),
    )
    stages = partition(model, 2)
    assert stage_costs(stages) == [4.0, 4.0]
    assert [len(s) for s in stages] == [3, 5]
    assert isinstance(stages[0][0], nn.Flatten) and isinstance(stages[1][-1], nn.ReLU)
    assert stages[0][1] is model[1]  # shared modules: training the stages trains the model
    x = torch.randn(2, 1024)
    torch.testing.assert_close(stages[1](stages[0](x)), model(x))


def test_partition_minimises_the_largest_stage_cost() -> None:
    gen = torch.Generator().manual_seed(5)
    costs = torch.randint(1, 9, (7,), generator=gen).tolist()
    model = nn.Sequential(*[nn.Identity() for _ in costs])
    cost_of = {id(module): float(c) for module, c in zip(model, costs)}
    for m in range(1, 6):
        stages = partition(model, m, cost=lambda module: cost_of[id(module)])
        best = min(
            max(sum(costs[a:b]) for a, b in zip((0, *cuts), (*cuts, len(costs))))
            for cuts in itertools.combinations(range(1, len(costs)), m - 1)
        )
        assert len(stages) == m and sum(len(s) for s in stages) == len(costs)
        assert max(stage_costs(stages, cost=lambda module: cost_of[id(module)])) == best


def test_partition_refuses_bad_inputs() -> None:
    model = _mlp([3, 3, 3])  # two cost-carrying Linear layers
    with pytest.raises(ValueError, match=r"num_stages = 3 .* 1 <= num_stages <= 2"):
        partition(model, 3)
    with pytest.raises(ValueError, match="num_stages = 0"):
        partition(model, 0)
    with pytest.raises(ValueError, match="cost = -1.0"):
        partition(model, 1, cost=lambda module: -1.0)
    with pytest.raises(TypeError, match="nn.Sequential"):
        partition(nn.Linear(2, 2), 1)  # type: ignore[arg-type]


# --- the executor -----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "m"), [("async", 1), ("none", 3)])
def test_sequential_schedules_equal_per_sample_sgd_bit_for_bit(mode: str, m: int) -> None:
    model = _mlp([5, 8, 6, 3])
    reference = copy.deepcopy(model)
    batches = _batches(12, 3, 5, 3)
    _run(model, m, mode, batches, DigitalSGD(0.05))
    _sgd_reference(reference, [[xy] for xy in batches], lr=0.05)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("order", ["gpipe", "1f1b"])
def test_sync_equals_minibatch_sgd_on_the_union(order: str) -> None:
    model = _mlp([5, 8, 6, 3])
    reference = copy.deepcopy(model)
    batches = _batches(8, 3, 5, 3)
    executor = PipelineExecutor(partition(model, 3), DigitalSGD(0.1), MSE)
    executor.run(build_schedule("sync", 3, 8, 4, order), batches)
    _sgd_reference(reference, [batches[:4], batches[4:]], lr=0.1)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(model[0].weight, _mlp([5, 8, 6, 3])[0].weight)  # it did train


@pytest.mark.parametrize("m", [2, 3, 4])
def test_measured_staleness_is_m_minus_stage(m: int) -> None:
    n = 3 * m
    batches = _batches(n, 2, 3, 2)
    executor = PipelineExecutor(partition(_mlp([3] * m + [2]), m), DigitalSGD(0.01), MSE)
    schedule = build_schedule("async", m, n)
    measured = executor.run(schedule, batches).staleness
    for (s, j), value in measured.items():
        stage_number = s + 1  # the paper's 1-based m
        steady = j >= m - stage_number  # the stage has seen its fill
        assert value == (m - stage_number if steady else j), (s, j)
    assert measured == schedule.staleness()
    sync = PipelineExecutor(partition(_mlp([3] * m + [2]), m), DigitalSGD(0.01), MSE)
    assert set(sync.run(build_schedule("sync", m, n, 3), batches).staleness.values()) == {0}


class _Probe(nn.Linear):
    """A linear layer that records the weights of every call: (recomputation?, weights)."""

    calls: list[tuple[bool, Tensor]]

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((torch.is_grad_enabled(), self.weight.detach().clone()))
        return super().forward(x)


def test_backward_recomputes_on_the_live_weights() -> None:
    torch.manual_seed(0)
    probe = _Probe(3, 4)
    probe.calls = []
    model = nn.Sequential(probe, nn.Tanh(), nn.Linear(4, 2))
    n = 6
    _run(model, 2, "async", _batches(n, 2, 3, 2), DigitalSGD(0.1))
    forward = [w for grad, w in probe.calls if not grad]  # F of micro-batch j, in order
    backward = [w for grad, w in probe.calls if grad]  # B of micro-batch j, in order
    assert len(forward) == len(backward) == n
    for j in range(1, n - 1):
        # stage 0 runs F(j), B(j - 1), U, F(j + 1), B(j): B(j) sees the update after F(j)
        assert torch.equal(backward[j], forward[j + 1])
        assert not torch.equal(backward[j], forward[j])  # no weight stashing


def test_async_gradients_are_really_stale_and_first_order_in_lr() -> None:
    batches = _batches(24, 2, 4, 2)
    start = _mlp([4, 6, 5, 2])
    gaps = []
    for lr in (0.02, 0.005):
        stale, fresh = copy.deepcopy(start), copy.deepcopy(start)
        _run(stale, 3, "async", batches, DigitalSGD(lr))
        _run(fresh, 3, "none", batches, DigitalSGD(lr))
        w0, w_stale, w_fresh = (
            torch.cat([p.detach().flatten() for p in net.parameters()])
            for net in (start, stale, fresh)
        )
        gaps.append(float((w_stale - w_fresh).norm() / (w_fresh - w0).norm()))
    assert gaps[1] > 0  # staleness changes the trajectory
    assert 2.5 < gaps[0] / gaps[1] < 6  # relative gap ~ lr: a quarter of the lr, a quarter


def test_response_update_with_a_huge_bound_is_digital_sgd() -> None:
    batches = _batches(10, 3, 4, 2)
    digital, analog = _mlp([4, 6, 2]), _mlp([4, 6, 2])
    _run(digital, 2, "async", batches, DigitalSGD(0.1))
    _run(analog, 2, "async", batches, AnalogSGD(0.1, tau=1e12))
    for p, q in zip(digital.parameters(), analog.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    bounded = _mlp([4, 6, 2])
    _run(bounded, 2, "async", batches, AnalogSGD(0.1, tau=0.5))
    assert not torch.allclose(bounded[0].weight, digital[0].weight, atol=1e-4)


def test_tiki_taka_state_is_kept_per_weight_matrix() -> None:
    model = _mlp([4, 6, 2])
    executor = PipelineExecutor(partition(model, 2), TikiTaka(0.1, 0.2, tau=1.0), MSE)
    executor.run(build_schedule("async", 2, 6), _batches(6, 2, 4, 2))
    assert set(executor.state) == {model[0].weight, model[2].weight}  # not the biases
    for weight, state in executor.state.items():
        assert torch.equal(weight, state["slow"]) and state["fast"].abs().sum() > 0
    assert executor.versions == [6, 6] and executor.samples == 12


def test_evaluations_are_logged_against_samples_and_cycles() -> None:
    batches = _batches(8, 2, 3, 2)
    executor = PipelineExecutor(partition(_mlp([3, 3, 2]), 2), DigitalSGD(0.1), MSE)
    calls: list[int] = []

    def count() -> dict[str, float]:
        calls.append(0)
        return {"calls": float(len(calls))}

    result = executor.run(build_schedule("async", 2, 8), batches, eval_fn=count, eval_every=3)
    assert [e["calls"] for e in result.evals] == [1.0, 2.0, 3.0]  # after 3, 6 and at the end
    samples = [e["samples"] for e in result.evals]
    # every micro-batch whose input-stage backward is done has had its loss computed
    assert 2 * 3 <= samples[0] <= samples[1] <= samples[2] == 2 * 8 and samples[1] >= 2 * 6
    assert result.evals[-1]["cycle"] == result.cycles == 2 * (8 + 2 - 1)
    again = executor.run(build_schedule("async", 2, 8), batches)
    assert again.history[0]["cycle"] > result.cycles  # the clock continues across runs
    # sync updates after micro-batches 4 and 8: the evaluations wait for them
    sync = PipelineExecutor(partition(_mlp([3, 3, 2]), 2), DigitalSGD(0.1), MSE)
    evals = sync.run(build_schedule("sync", 2, 8, 4), batches, eval_fn=count, eval_every=3).evals
    assert [e["samples"] for e in evals] == [8, 16]
    assert [e["cycle"] for e in evals] == [2 * (4 + 2 - 1), 4 * (4 + 2 - 1)]


# --- the analog floor -----------------------------------------------------------------------


def _floor(rule: UpdateRule, mode: str, seed: int = 2) -> float:
    """Excess loss at the time-averaged weights of a 20-weight linear regression, 2 stages.

    y = v* . x + noise (x ~ N(0, I), noise std 1), learned as W2 W1 (4x4 and 1x4 weights). The
    excess loss of the effective weights v = W2 W1 is |v - v*|^2; averaging v over the second
    half removes the stochastic fluctuation and leaves the bias, i.e. the floor.
    """
    target = torch.tensor([0.8, -0.6, 0.5, -0.4])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1000, 4, 4, generator=gen)  # (micro-batches, micro-batch, features)
    y = x @ target[:, None] + torch.randn(1000, 4, 1, generator=gen)
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(0.7 * torch.eye(4))
        model[1].weight.fill_(0.2)
    executor = PipelineExecutor(partition(model, 2), rule, MSE)
    result = executor.run(
        build_schedule(mode, 2, 1000),
        list(zip(x, y)),
        eval_fn=lambda: {"v": (model[1].weight @ model[0].weight).flatten().clone()},
        eval_every=1,
    )
    mean_v = torch.stack([e["v"] for e in result.evals[500:]]).mean(dim=0)
    return float(((mean_v - target) ** 2).sum())


def test_analog_sgd_floor_persists_under_async_and_tiki_taka_removes_it() -> None:
    lr, tau = 0.05, 1.0
    digital = _floor(DigitalSGD(lr), "async")
    analog_sequential = _floor(AnalogSGD(lr, tau), "none")
    analog_async = _floor(AnalogSGD(lr, tau), "async")
    tiki_taka_async = _floor(TikiTaka(lr, transfer_lr=0.01, tau=tau), "async")
    assert analog_sequential > 5 * digital  # the asymmetry floor
    assert 0.5 < analog_async / analog_sequential < 2  # asynchrony neither causes nor cures it
    assert tiki_taka_async * 5 < analog_async, (tiki_taka_async, analog_async)


# --- bad inputs -----------------------------------------------------------------------------


def test_bad_arguments_name_the_parameter_the_value_and_the_allowed_values() -> None:
    checks = [
        (lambda: build_schedule("pipelined", 2, 4), r"mode = 'pipelined'.*'none', 'sync'"),
        (lambda: build_schedule("sync", 0, 4), r"num_stages = 0 .*>= 1"),
        (lambda: build_schedule("sync", 2, 4, 0), r"microbatches_per_minibatch = 0"),
        (lambda: build_schedule("sync", 2, 4, order="zb"), r"order = 'zb'.*'gpipe'"),
        (lambda: CycleCost(backward=0), r"backward = 0 .*> 0"),
        (lambda: makespan(build_schedule("async", 2, 3), CycleCost(stage_scale=(1.0,))), "2"),
        (lambda: AnalogSGD(0.1, tau=0.0), r"tau = 0.0 .*> 0"),
        (lambda: TikiTaka(0.1, transfer_lr=-1.0, tau=1.0), r"transfer_lr = -1.0"),
        (lambda: DigitalSGD(lr=0.0), r"lr = 0.0"),
    ]
    for call, pattern in checks:
        with pytest.raises(ValueError, match=pattern):
            call()
    executor = PipelineExecutor(partition(_mlp([3, 3, 2]), 2), DigitalSGD(0.1), MSE)
    with pytest.raises(ValueError, match=r"schedule.num_stages = 3 .* 2 stages"):
        executor.run(build_schedule("async", 3, 2), _batches(2, 1, 3, 2))
    with pytest.raises(ValueError, match=r"schedule.num_microbatches = 4 .* 2 batches"):
        executor.run(build_schedule("async", 2, 4), _batches(2, 1, 3, 2))


# --- pulsed devices in the executor ------------------------------------------------------------


@pytest.mark.parametrize("mode, b", [("async", 1), ("sync", 3)])
def test_ideal_trainable_layers_equal_digital_sgd_in_the_executor(mode: str, b: int) -> None:
    from analoglib.nn.convert import convert_to_analog
    from analoglib.tiles.training import TrainingConfig

    digital = _mlp([5, 8, 6, 3])
    analog = convert_to_analog(copy.deepcopy(digital), TrainingConfig.ideal())
    batches = _batches(6, 3, 5, 3)
    _run(digital, 3, mode, batches, DigitalSGD(0.1), b)
    _run(analog, 3, mode, batches, DigitalSGD(0.1), b)
    for index in (0, 2, 4):
        torch.testing.assert_close(
            analog[index].get_weights(), digital[index].weight, rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(analog[index].bias, digital[index].bias, rtol=1e-5, atol=1e-6)
    assert not torch.equal(digital[0].weight, _mlp([5, 8, 6, 3])[0].weight)


def test_pulsed_devices_train_reproducibly_in_the_async_pipeline() -> None:
    from analoglib.devices import SoftBoundsDevice
    from analoglib.nn.convert import convert_to_analog
    from analoglib.tiles.training import TrainingConfig

    weights = []
    for _ in range(2):
        config = TrainingConfig(device=SoftBoundsDevice(dw_min=0.01))
        analog = convert_to_analog(_mlp([5, 8, 6, 3]), config, seed=4)
        start = analog[0].get_weights()
        _run(analog, 3, "async", _batches(6, 3, 5, 3), DigitalSGD(0.2))
        weights.append(analog[0].get_weights())
        assert not torch.equal(start, weights[-1])
    assert torch.equal(*weights)
