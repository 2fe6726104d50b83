"""In-memory training under DistributedDataParallel keeps one chip's semantics.

Two gloo processes train on the halves of each global batch; the analog layers gather x and d
of both ranks before their update (``sync_ranks``), so every rank applies the same stochastic
pulses (trains, cycle-to-cycle noise, choppers) from identically seeded tiles, and both equal one
process on the whole batch. Reads are noise-free here (converters on): the read-noise draws have
the local batch's shape, so they could not match one process.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.multiprocessing as mp
from helpers import free_port, gloo_group
from torch import nn

from analoglib.devices import SoftBoundsDevice
from analoglib.nn.convert import convert_to_analog
from analoglib.nn.trainable import AnalogTrainLayer
from analoglib.tiles import algorithms as alg
from analoglib.tiles.io import IOParameters
from analoglib.tiles.training import TrainingConfig
from analoglib.training.analog_sgd import AnalogSGD

STEPS = 4
GLOBAL_BATCH = 8


def _model() -> nn.Module:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(12, 16), nn.Sigmoid(), nn.Linear(16, 3))
    io = IOParameters(out_noise=0.0)
    config = TrainingConfig(
        device=SoftBoundsDevice(dw_min=0.01),
        algorithm=alg.c_ttv2(transfer_forward=IOParameters(out_noise=0.0)),
        forward=io,
        backward=io.replace(bound_management="none"),
    )
    model = convert_to_analog(digital, config, seed=3)
    for layer in model.modules():
        if isinstance(layer, AnalogTrainLayer):
            layer.sync_ranks = True
    return model


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(STEPS, GLOBAL_BATCH, 12, generator=g), torch.randint(
        0, 3, (STEPS, GLOBAL_BATCH), generator=g
    )


def _train(model: nn.Module, analog: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = AnalogSGD(model.parameters(), lr=0.5)
    optimizer.regroup_param_groups(analog)
    for step in range(len(x)):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[step]), y[step]).backward()
        optimizer.step()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    with gloo_group(rank, world, port):
        analog = _model()
        model = nn.parallel.DistributedDataParallel(analog)
        x, y = _data()
        half = GLOBAL_BATCH // world
        share = slice(rank * half, (rank + 1) * half)
        _train(model, analog, x[:, share], y[:, share])
        torch.save(_state(analog), Path(out) / f"rank{rank}.pt")


def test_two_ranks_apply_the_pulses_of_one_chip(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single = _model()
    x, y = _data()
    _train(single, single, x, y)
    reference = _state(single)

    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for key, value in reference.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # the ranks hold one chip
        # the gathered batch is the union: only float summation orders differ
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6, msg=key)
    start = _state(_model())
    assert not torch.equal(reference["0.tile.a"], start["0.tile.a"])
    assert not torch.equal(reference["0.tile.c"], start["0.tile.c"])
