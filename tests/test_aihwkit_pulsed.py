"""Optional cross-check of a pulsed device against aihwkit (skips where aihwkit is absent).

The same soft-bounds device in both simulators receives 1,000 up pulses on every device of a
64 x 64 tile (in aihwkit: rank-one updates with x = 1, d = -1 and lr = dw_min, so that update
management fires exactly one coincidence per device and update). The mean and the spread of
the trajectories must agree within their sampling errors (4,096 devices).
"""

from __future__ import annotations

import math

import pytest
import torch

from analoglib import devices as dv

aihwkit = pytest.importorskip("aihwkit")

PULSES = 1000
FIELDS = {
    "dw_min": 0.01,
    "dw_min_dtod": 0.3,
    "dw_min_std": 0.3,
    "up_down": 0.0,
    "up_down_dtod": 0.01,
    "w_max": 0.6,
    "w_min": -0.6,
    "w_max_dtod": 0.3,
    "w_min_dtod": 0.3,
}


def _aihwkit_trajectory() -> torch.Tensor:
    from aihwkit.simulator.configs import SingleRPUConfig
    from aihwkit.simulator.configs import SoftBoundsDevice as AihwkitSoftBounds
    from aihwkit.simulator.tiles import AnalogTile

    config = SingleRPUConfig(device=AihwkitSoftBounds(**FIELDS))
    config.forward.is_perfect = True
    tile = AnalogTile(64, 64, config)
    tile.set_learning_rate(FIELDS["dw_min"])
    tile.set_weights(torch.zeros(64, 64))
    x, d = torch.ones(1, 64), -torch.ones(1, 64)
    means = []
    for k in range(PULSES):
        tile.update(x, d)
        if (k + 1) % 100 == 0:
            means.append(tile.get_weights()[0].flatten().clone())
    return torch.stack(means)  # (10, 4096)


def test_soft_bounds_trajectory_matches_aihwkit() -> None:
    theirs = _aihwkit_trajectory()
    device = dv.SoftBoundsDevice(**FIELDS)
    traces = dv.pulse_response(
        device, torch.ones(PULSES, dtype=torch.long), 4096, torch.Generator().manual_seed(0)
    )
    ours = traces[100::100]  # after 100, 200, ..., 1000 pulses
    for k in range(len(theirs)):
        se = math.sqrt((ours[k].var() + theirs[k].var()) / 4096)
        assert abs(float(ours[k].mean() - theirs[k].mean())) < 5 * se + 1e-4, k
        assert float(ours[k].std()) == pytest.approx(float(theirs[k].std()), rel=0.1, abs=1e-3)
