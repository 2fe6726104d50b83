"""One training step of the 3-layer MLP per in-memory algorithm, as a ratio to a plain SGD step.

The plain step is forward, backward and ``torch.optim.SGD.step`` of the digital 784-256-128-10
sigmoid MLP at batch 10. The analog step is the same network converted with a
:class:`~analoglib.tiles.training.TrainingConfig` of each algorithm on the measured ReRAM array
preset (forward and backward reads through the 7-bit DAC / 9-bit ADC periphery with noise and
bound management, then :class:`~analoglib.training.analog_sgd.AnalogSGD`'s pulsed update), with
the pulses applied per sample (the hardware's order) or batch-aggregated, in closed form.

Run: ``python benchmarks/bench_analog_training.py [--threads N] [--repeats R] [--device cuda]``.
"""

from __future__ import annotations

import torch
from timing import paired_times, setup
from torch import nn

from analoglib import devices as dv
from analoglib.nn.convert import convert_to_analog
from analoglib.tiles.training import build_config
from analoglib.training.analog_sgd import AnalogSGD

ALGORITHMS = ("sgd", "ttv2", "c-ttv2", "agad", "mp")
BATCH = 10


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 128), nn.Sigmoid(), nn.Linear(128, 10)
    )


def main() -> None:
    args, device, sync = setup(__doc__.splitlines()[0], repeats=20)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 784, generator=gen).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=gen).to(device)
    digital = _mlp().to(device)
    plain_optimizer = torch.optim.SGD(digital.parameters(), lr=0.1)

    def plain() -> None:
        plain_optimizer.zero_grad()
        nn.functional.cross_entropy(digital(x), y).backward()
        plain_optimizer.step()
        sync()

    print(f"{'algorithm':>10} {'pulses':>8} {'SGD ms':>8} {'analog ms':>10} {'ratio':>7}")
    for algorithm in ALGORITHMS:
        for aggregate in ("sample", "batch"):
            config = build_config(
                algorithm, dv.reram_array_om(), aggregate=aggregate, closed_form=True
            )
            model = convert_to_analog(_mlp(), config, on_unsupported="ignore").to(device)
            optimizer = AnalogSGD(model, lr=0.1)

            def analog(model: nn.Module = model, optimizer: AnalogSGD = optimizer) -> None:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                sync()

            t_plain, t_analog = paired_times(plain, analog, args.repeats)
            print(
                f"{algorithm:>10} {aggregate:>8} {1e3 * t_plain:8.3f} {1e3 * t_analog:10.2f} "
                f"{t_analog / t_plain:7.0f}"
            )


if __name__ == "__main__":
    main()
