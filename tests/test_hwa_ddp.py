"""HWA training under DistributedDataParallel (two CPU processes, gloo) equals one process.

The two processes train on the halves of the global batch; one process on the whole batch.

What is on: the standard forward (8-bit DAC/ADC, IR drop), learned input ranges and output
scales, fixed clipping and channelwise remapping after every step, and the additive weight
modifier (its draws have the weight's shape, so every rank draws what one process draws). What
is off, and why (see ``analoglib.training.hwa``): read and output noise (their draws have the
local batch's shape), the data initialisation of the input ranges (per-rank statistics) and the
input-range decay (it depends on the per-rank fraction of unclipped inputs).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.multiprocessing as mp
from helpers import free_port, gloo_group
from torch import nn

import analoglib as al

STEPS = 4
GLOBAL_BATCH = 16


def _config() -> al.PCMConfig:
    config = al.presets.standard_hwa_2023()
    config.forward.out_noise = 0.0
    config.forward.w_noise = 0.0
    config.pre_post.input_range.init_from_data = 0
    config.pre_post.input_range.init_value = 2.0
    config.pre_post.input_range.decay = 0.0
    config.modifier.type = "add_normal"
    config.modifier.std_dev = 0.05
    return config


def _model() -> nn.Module:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 3))
    return al.convert_to_analog(digital, _config())


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, GLOBAL_BATCH, 12, generator=g) * 1.5
    y = torch.randint(0, 3, (STEPS, GLOBAL_BATCH), generator=g)
    return x, y


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(len(x)):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[step]), y[step]).backward()
        optimizer.step()
        al.training.post_update_step(model)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    with gloo_group(rank, world, port):
        model = nn.parallel.DistributedDataParallel(_model())
        x, y = _data()
        half = GLOBAL_BATCH // world
        share = slice(rank * half, (rank + 1) * half)
        _train(model, x[:, share], y[:, share])
        state = {
            k: v.detach().clone()
            for k, v in model.module.state_dict().items()
            if isinstance(v, torch.Tensor)
        }
        torch.save(state, Path(out) / f"rank{rank}.pt")


def test_ddp_two_processes_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single = _model()
    x, y = _data()
    _train(single, x, y)
    reference = {k: v for k, v in single.state_dict().items() if isinstance(v, torch.Tensor)}

    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert set(ranks[0]) == set(reference)
    for key, value in reference.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # ranks agree exactly
        # Only the summation order of the gradient differs (all-reduce of two half sums).
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # The test is not vacuous: training moved the weights, ranges and scales (the learned
    # output scales are folded into the mapping scales at every remap).
    start = _model().state_dict()
    for key in ("0.weight", "0.input_range", "0.mapping_scales", "2.mapping_scales"):
        assert not torch.allclose(reference[key], start[key]), key
