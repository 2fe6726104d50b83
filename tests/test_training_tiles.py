"""Trainable tiles, the training I/O model, in-memory algorithms and AnalogSGD.

Every test can fail: reads are compared with the exact product and the converter formulas,
ideal training with torch's SGD, transfer mechanics with their bookkeeping rules.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from analoglib.devices import ConstantStepDevice, SoftBoundsDevice
from analoglib.nn.convert import convert_to_analog, convert_to_digital
from analoglib.nn.trainable import AnalogTrainConv2d, AnalogTrainLinear
from analoglib.tiles import algorithms as alg
from analoglib.tiles.io import IOParameters, io_read
from analoglib.tiles.pulse import PulseTrainParameters
from analoglib.tiles.training import TrainingConfig, TrainingTile, expected_response_update
from analoglib.training.analog_sgd import AnalogSGD


def _noise_free_constant(dw_min: float = 0.01, bound: float = 10.0) -> ConstantStepDevice:
    return ConstantStepDevice(
        dw_min=dw_min, dw_min_dtod=0.0, dw_min_std=0.0, up_down=0.0, up_down_dtod=0.0,
        w_max=bound, w_min=-bound, w_max_dtod=0.0, w_min_dtod=0.0,
    )  # fmt: skip


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- the I/O model ---------------------------------------------------------------------------
def test_perfect_read_is_the_exact_product() -> None:
    x, w = torch.randn(2, 5, 7, generator=_gen()), torch.randn(2, 3, 7, generator=_gen(1))
    assert torch.equal(io_read(x, w, IOParameters.perfect()), torch.bmm(x, w.transpose(1, 2)))
    d = torch.randn(2, 5, 3, generator=_gen(2))
    assert torch.equal(io_read(d, w, IOParameters.perfect(), transposed=True), torch.bmm(d, w))


def test_noise_management_makes_the_read_scale_invariant() -> None:
    io = IOParameters(out_noise=0.0)
    x, w = torch.randn(1, 6, 16, generator=_gen()), 0.3 * torch.randn(1, 4, 16, generator=_gen(1))
    small = io_read(1e-4 * x, w, io)
    assert torch.allclose(small, 1e-4 * io_read(x, w, io), rtol=1e-5, atol=0)
    # without it, inputs below half a DAC step read as zero: the backward would be lost
    off = io_read(1e-4 * x, w, io.replace(noise_management="none"))
    assert torch.equal(off, torch.zeros_like(off))


def test_dac_levels_are_counted() -> None:
    io = IOParameters(out_noise=0.0, out_res=0.0, out_bound=0.0, noise_management="none")
    x = torch.linspace(-1, 1, 10001).reshape(1, -1, 1)
    read = io_read(x, torch.ones(1, 1, 1), io)
    assert read.unique().numel() == 2 * round(1 / io.inp_res) + 1


def test_output_noise_has_the_configured_std() -> None:
    # 200k draws: the sample std has a relative standard error of 1/sqrt(2 n) = 0.16 %
    io = IOParameters(out_noise=0.06, out_res=0.0, inp_res=0.0, noise_management="none")
    x = torch.zeros(1, 200_000, 4)
    x[..., 0] = 0.5
    w = torch.ones(1, 1, 4)
    read = io_read(x, w, io, generator=_gen())
    error = read - 0.5
    assert abs(float(error.std()) / 0.06 - 1) < 5 * (1 / math.sqrt(2 * 200_000))
    assert abs(float(error.mean())) < 5 * 0.06 / math.sqrt(200_000)


def test_bound_management_recovers_saturated_outputs() -> None:
    io = IOParameters(out_noise=0.0, out_res=0.0, inp_res=0.0)
    x = torch.ones(1, 2, 64)
    w = torch.full((1, 3, 64), 0.5)  # exact output 32, bound 12
    exact = torch.full((1, 2, 3), 32.0)
    assert torch.allclose(io_read(x, w, io), exact)
    clipped = io_read(x, w, io.replace(bound_management="none"))
    assert torch.equal(clipped, torch.full_like(exact, 12.0))
    # backward reads never use bound management (as in aihwkit)
    back = io_read(torch.ones(1, 2, 64), w.transpose(1, 2).contiguous(), io, transposed=True)
    assert float(back.max()) == 12.0


def test_bound_management_stops_at_its_resolution_limit() -> None:
    # the reductions 1, 2, ..., 32 are tried (32 > 0.25 / (1/126)); at 32 the output still
    # saturates, so the result is the clipped read times 32
    io = IOParameters(out_noise=0.0, out_res=0.0)
    x = torch.ones(1, 1, 256)
    w = torch.full((1, 1, 256), 2.0)  # exact 512: 512 / 32 = 16 > 12
    assert float(io_read(x, w, io)) == pytest.approx(12.0 * 32)


# -- tiles -------------------------------------------------------------------------------------
def test_tiling_never_changes_the_ideal_result() -> None:
    weight = 0.1 * torch.randn(5, 300, generator=_gen())
    x = torch.randn(4, 300, generator=_gen(1))
    d = torch.randn(4, 5, generator=_gen(2))
    results = []
    for size in (0, 64, 100):
        tile = TrainingTile(300, 5, TrainingConfig.ideal(max_input_size=size))
        tile.set_weights(weight)
        assert tile.mapping.tiles_in == (1 if size == 0 else math.ceil(300 / size))
        results.append((tile.forward_read(tile.to_tiles_input(x)), tile.backward_read(d)))
    for forward, backward in results[1:]:
        assert torch.allclose(forward, results[0][0], atol=1e-5)
        assert torch.allclose(backward, results[0][1], atol=1e-6)
    assert torch.allclose(results[0][0], x @ weight.T, atol=1e-5)


def test_expected_response_update_is_sgd_for_an_ideal_device_and_soft_bounds_otherwise() -> None:
    w = torch.randn(64, generator=_gen()).clamp(-2, 2) * 0.2  # inside the bounds +-0.6
    delta = torch.randn(64, generator=_gen(1)) * 1e-3
    tile = TrainingTile(8, 8, TrainingConfig.ideal())
    state = tile.c_state
    ideal = expected_response_update(
        w.reshape(1, 8, 8), delta.reshape(1, 8, 8), state, tile.config.device
    )
    assert torch.equal(ideal.flatten(), w + delta)
    soft = SoftBoundsDevice(dw_min=1e-3, dw_min_dtod=0, up_down_dtod=0, w_max_dtod=0, w_min_dtod=0)
    soft_tile = TrainingTile(8, 8, TrainingConfig(device=soft))
    new = expected_response_update(
        w.reshape(1, 8, 8), delta.reshape(1, 8, 8), soft_tile.c_state, soft
    ).flatten()
    tau = soft.w_max
    assert torch.allclose(new, w + delta - delta.abs() * w / tau, atol=1e-7)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 10), nn.Sigmoid(), nn.Linear(10, 3))


def _batches(steps: int = 5, batch: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = _gen(3)
    return [
        (torch.randn(batch, 12, generator=g), torch.randint(0, 3, (batch,), generator=g))
        for _ in range(steps)
    ]


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, batches, scheduler=None) -> None:  # type: ignore[no-untyped-def]
    for x, y in batches:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def test_ideal_in_memory_training_equals_torch_sgd_with_a_scheduler() -> None:
    digital = _mlp()
    analog = convert_to_analog(digital, TrainingConfig.ideal(), on_unsupported="ignore")
    optimizer = AnalogSGD(analog, lr=0.5)
    reference = torch.optim.SGD(digital.parameters(), lr=0.5)
    schedulers = [torch.optim.lr_scheduler.StepLR(o, 2, 0.5) for o in (optimizer, reference)]
    _train(analog, optimizer, _batches(), schedulers[0])
    _train(digital, reference, _batches(), schedulers[1])
    for a, d in ((analog[0], digital[0]), (analog[2], digital[2])):
        assert torch.allclose(a.get_weights(), d.weight, atol=1e-6)
        assert torch.allclose(a.bias, d.bias, atol=1e-6)
    assert not torch.allclose(digital[0].weight, _mlp()[0].weight)  # it did train


def test_ideal_conv2d_equals_torch_sgd() -> None:
    torch.manual_seed(0)
    digital = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    )
    analog = convert_to_analog(digital, TrainingConfig.ideal())
    assert isinstance(analog[0], AnalogTrainConv2d)
    g = _gen(5)
    batches = [
        (torch.randn(3, 2, 8, 8, generator=g), torch.randint(0, 3, (3,), generator=g))
        for _ in range(3)
    ]
    _train(analog, AnalogSGD(analog, lr=0.2), batches)
    _train(digital, torch.optim.SGD(digital.parameters(), lr=0.2), batches)
    assert torch.allclose(
        analog[0].get_weights().reshape(digital[0].weight.shape), digital[0].weight, atol=1e-6
    )
    back = convert_to_digital(analog)
    assert isinstance(back[0], nn.Conv2d)
    x = torch.randn(2, 2, 8, 8)
    assert torch.allclose(back(x), digital(x), atol=1e-5)


def _pulsed_config(**changes) -> TrainingConfig:  # type: ignore[no-untyped-def]
    device = SoftBoundsDevice(dw_min=0.01)
    return TrainingConfig(device=device, **changes)


@pytest.mark.parametrize(
    "algorithm", [alg.AnalogSGD(), alg.c_ttv2(), alg.agad(), alg.mixed_precision()]
)
def test_update_at_step_and_inside_backward_give_identical_weights(algorithm) -> None:  # type: ignore[no-untyped-def]
    config = _pulsed_config(algorithm=algorithm)
    models = []
    for mode in ("step", "backward"):
        model = _mlp()
        model[0] = AnalogTrainLinear.from_digital(model[0], config, seed=1, update_mode=mode)
        model[2] = AnalogTrainLinear.from_digital(model[2], config, seed=2, update_mode=mode)
        optimizer = AnalogSGD(model, lr=0.3)
        _train(model, optimizer, _batches())
        models.append(model)
    for index in (0, 2):
        assert torch.equal(models[0][index].tile.c, models[1][index].tile.c)
    assert not torch.equal(models[0][0].tile.c, _mlp()[0].weight.detach())


def test_backward_reads_the_live_weights() -> None:
    layer = AnalogTrainLinear(4, 3, bias=False, config=TrainingConfig.ideal())
    layer.set_weights(torch.ones(3, 4))
    x = torch.randn(2, 4, requires_grad=True)
    y = layer(x)
    layer.set_weights(2 * torch.ones(3, 4))  # the devices change between forward and backward
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((2, 4), 6.0))


def test_same_seed_same_pulsed_training_bit_for_bit() -> None:
    results = []
    for _ in range(2):
        model = convert_to_analog(_mlp(), _pulsed_config(algorithm=alg.c_ttv2()), seed=7)
        _train(model, AnalogSGD(model, lr=0.3), _batches())
        results.append(model[0].tile.c.clone())
    assert torch.equal(*results)


def test_batch_aggregation_equals_per_sample_order_for_a_constant_step_device() -> None:
    # one update: the trains are drawn first, so both modes see the same coincidences
    weights = []
    x, _ = _batches(1)[0]
    d = torch.randn(x.shape[0], 5, generator=_gen(11))
    for aggregate in ("sample", "batch"):
        config = TrainingConfig(device=_noise_free_constant(), aggregate=aggregate)
        tile = TrainingTile(12, 5, config, seed=3)
        tile.update(x, d, lr=0.05)
        weights.append(tile.c.clone())
    assert torch.allclose(*weights, atol=1e-6)  # up to the order of float additions
    assert weights[0].abs().sum() > 0


# -- algorithms ------------------------------------------------------------------------------
def test_mixed_precision_accumulates_exactly_and_keeps_the_remainder() -> None:
    device = _noise_free_constant(dw_min=0.01)
    tile = TrainingTile(6, 4, TrainingConfig(device=device, algorithm=alg.mixed_precision()))
    g = _gen(4)
    x, d = torch.randn(5, 6, generator=g), torch.randn(5, 4, generator=g)
    lr = 0.05
    chi = -lr * (d.T @ x)
    n = torch.trunc(chi / 0.01)
    tile.update(x, d, lr)
    assert torch.allclose(tile.chi[0], chi - n * 0.01, atol=1e-6)
    assert torch.allclose(tile.c[0], n * 0.01, atol=1e-6)
    assert bool((tile.chi.abs() < 0.01 + 1e-6).all()) and n.abs().sum() > 0


def _offset_tile(algorithm: alg.TransferParameters, offset: float) -> TrainingTile:
    """A transfer tile whose A holds a constant read offset and gets no gradient."""
    device = _noise_free_constant(dw_min=0.01)
    config = TrainingConfig(device=device, algorithm=algorithm)
    tile = TrainingTile(4, 3, config, seed=0)
    tile.a.fill_(offset)
    return tile


def _transfers(tile: TrainingTile, reads: int, per_batch: int = 1) -> None:
    # one read per sample (transfer_every 1); d = 0: A receives no pulses
    x, d = torch.ones(per_batch, 4), torch.zeros(per_batch, 3)
    for _ in range(reads // per_batch):
        tile.update(x, d, lr=1.0)


def test_ttv2_buffer_writes_trunc_h_and_forgets() -> None:
    # lr_h * read = 1 * 0.0125 / 0.01 = 1.25 per read: every read writes one pulse, H resets to 0
    p = alg.ttv2(transfer_lr=1.0, transfer_forward=IOParameters.perfect())
    tile = _offset_tile(p, 0.0125)
    _transfers(tile, 4)  # 4 reads: every column once
    assert torch.allclose(tile.c, torch.full_like(tile.c, 0.01))
    assert torch.equal(tile.h, torch.zeros_like(tile.h))
    # without forgetting, the remainder 0.25 stays
    tile = _offset_tile(p.replace(forget_buffer=False), 0.0125)
    _transfers(tile, 4)
    assert torch.allclose(tile.h, torch.full_like(tile.h, 0.25))


def test_constant_offset_drifts_ttv2_but_not_c_ttv2_or_agad() -> None:
    # lr_h * offset = 0.03 per read: TTv2 writes a pulse every ~34 reads of a column, always up;
    # under choppers H is a random walk, whose writes grow like the square root of the reads
    offset, reads = 0.0003, 40_000
    drift = {}
    for name, p in (
        ("ttv2", alg.ttv2()),
        ("c-ttv2", alg.c_ttv2(auto_scale=False)),
        ("agad", alg.agad(auto_scale=False)),
    ):
        p = p.replace(transfer_forward=IOParameters.perfect())  # the offset alone, no read noise
        tile = _offset_tile(p, offset)
        _transfers(tile, reads // 2, per_batch=200)
        half = tile.c.clone()
        _transfers(tile, reads // 2, per_batch=200)
        drift[name] = float((tile.c - half).abs().mean())
    print(drift)
    assert drift["ttv2"] == pytest.approx(reads / 2 / 4 * 0.03 * 0.01, rel=0.05)
    assert drift["c-ttv2"] < 0.1 * drift["ttv2"]
    assert drift["agad"] < 0.1 * drift["ttv2"]


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        TrainingConfig(aggregate="mean")
    with pytest.raises(ValueError, match="noise_management"):
        IOParameters(noise_management="max")
    with pytest.raises(ValueError, match="algorithm.algorithm"):
        alg.TransferParameters(algorithm="tt3")
    with pytest.raises(ValueError, match="update_mode"):
        AnalogTrainLinear(3, 2, update_mode="later")
    with pytest.raises(ValueError, match="lr"):
        TrainingTile(3, 2, TrainingConfig()).update(torch.ones(1, 3), torch.ones(1, 2), lr=-1.0)


def test_optimiser_built_from_parameters_needs_the_model() -> None:
    model = convert_to_analog(_mlp(), TrainingConfig.ideal())
    optimizer = AnalogSGD(model.parameters(), lr=0.1)
    x, y = _batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match="regroup_param_groups"):
        optimizer.step()
    optimizer.regroup_param_groups(model)
    before = model[0].get_weights()
    optimizer.step()
    assert not torch.equal(before, model[0].get_weights())


def test_pulsed_training_learns_a_linear_map() -> None:
    # a constant-step device with pulses: the loss of a linear regression falls by 10x
    torch.manual_seed(0)
    target = torch.randn(3, 8) * 0.3
    config = TrainingConfig(device=ConstantStepDevice(dw_min=0.002), update=PulseTrainParameters())
    layer = AnalogTrainLinear(8, 3, bias=False, config=config)
    optimizer = AnalogSGD(layer, lr=0.1)
    g = _gen(9)
    losses = []
    for _ in range(300):
        x = torch.randn(10, 8, generator=g)
        optimizer.zero_grad()
        loss = ((layer(x) - x @ target.T) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert sum(losses[-20:]) < 0.1 * sum(losses[:20])


def test_model_copy_keeps_training_state() -> None:
    model = convert_to_analog(_mlp(), _pulsed_config(algorithm=alg.ttv2()))
    clone = copy.deepcopy(model)
    _train(model, AnalogSGD(model, lr=0.3), _batches())
    _train(clone, AnalogSGD(clone, lr=0.3), _batches())
    assert torch.equal(model[0].tile.a, clone[0].tile.a)


def test_write_noise_is_what_the_reads_see_and_only_pulsed_devices_redraw_it() -> None:
    device = SoftBoundsDevice(
        dw_min=0.01, write_noise_std=2.0, dw_min_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0
    )
    tile = TrainingTile(200, 100, TrainingConfig(device=device), seed=1)
    tile.set_weights(torch.zeros(100, 200))
    noise = tile.get_weights() - tile.mapping.from_tiles(tile.c)[0]
    # 20k devices: the sample std is within 5 relative standard errors (0.5 %) of 2 * 0.01
    assert abs(float(noise.std()) / 0.02 - 1) < 5 / math.sqrt(2 * 20_000)
    before = tile.get_weights()
    x = torch.zeros(1, 200)
    x[0, :10] = 1.0  # only the first 10 columns receive pulses
    tile.update(x, torch.ones(1, 100), lr=0.05)
    after = tile.get_weights()
    assert torch.equal(after[:, 10:], before[:, 10:])
    assert not torch.equal(after[:, :10], before[:, :10])


def test_lifetime_decays_the_conductances_once_per_batch() -> None:
    device = ConstantStepDevice(
        dw_min=0.01, dw_min_dtod=0.0, up_down_dtod=0.0, w_max_dtod=0.0, w_min_dtod=0.0,
        lifetime=20.0,
    )  # fmt: skip
    tile = TrainingTile(6, 4, TrainingConfig(device=device))
    weight = 0.3 * torch.randn(4, 6, generator=_gen(2))
    tile.set_weights(weight)
    for _ in range(5):
        tile.update(torch.ones(2, 6), torch.zeros(2, 4), lr=0.1)  # no pulses, decay only
    assert torch.allclose(tile.get_weights(), weight * (1 - 1 / 20) ** 5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_matches_the_cpu_semantics() -> None:
    digital = _mlp().cuda()
    analog = convert_to_analog(_mlp(), TrainingConfig.ideal()).cuda()
    batches = [(x.cuda(), y.cuda()) for x, y in _batches()]
    _train(analog, AnalogSGD(analog, lr=0.5), batches)
    _train(digital, torch.optim.SGD(digital.parameters(), lr=0.5), batches)
    assert torch.allclose(analog[0].get_weights(), digital[0].weight, atol=1e-5)
    weights = []
    for _ in range(2):  # pulsed training on the GPU is reproducible from the seed
        model = convert_to_analog(_mlp(), _pulsed_config(algorithm=alg.agad()), seed=5).cuda()
        _train(model, AnalogSGD(model, lr=0.3), batches)
        assert model[0].tile.c.is_cuda
        weights.append(model[0].tile.c.clone())
    assert torch.equal(*weights)


def test_ttv1_writes_the_read_column_onto_c_with_the_transfer_rate() -> None:
    # mean-count trains: k = lr_t |read| / dw_min = 0.5 * 0.04 / 0.01 = 2 pulses per read
    update = PulseTrainParameters(pulse_type="mean_count")
    p = alg.ttv1(transfer_update=update, transfer_forward=IOParameters.perfect(), transfer_lr=0.5)
    tile = _offset_tile(p, 0.04)
    tile.update(torch.ones(1, 4), torch.zeros(1, 3), lr=1.0)  # one read: column 0
    expected = torch.zeros_like(tile.c)
    expected[:, :, 0] = 0.5 * 0.04
    assert torch.allclose(tile.c, expected, atol=1e-7)


def test_fit_accepts_analog_sgd() -> None:
    from analoglib.training import fit

    model = convert_to_analog(_mlp(), TrainingConfig.ideal())
    before = model[0].get_weights()
    optimizer = AnalogSGD(model, lr=0.5)
    losses = fit(model, _batches(), epochs=2, lr=0.5, seed=0, optimizer=optimizer, progress=False)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert not torch.equal(before, model[0].get_weights())
