"""Pulsed in-memory update cost as a ratio to the plain SGD outer-product update, same run.

The plain update is ``W -= lr * d^T x`` for a mini-batch (one GEMM). The pulsed update draws
the stochastic pulse trains of every sample (aihwkit's bit-line rules, BL <= 31), counts the
coincidences and applies them to soft-bounds devices with cycle-to-cycle noise, either sample
after sample (``sample``, the hardware's order) or with the up and down pulses of the batch
summed and applied in interleaved rounds (``batch``). Shapes (batch x in -> out) are those of
the 3-layer MLP of the training study (784-256-128-10) at batch 10.

Modes: ``sample`` and ``batch`` apply the pulses one round per pulse index (the exact loop);
``+cf`` applies each device's n pulses at once in closed form (affine devices; mean exact,
variance matched). Measured on 2 CPU cores (torch 2.13), 784x256 layer, batch 10: 138 ms
(sample), 103 ms (batch), 50 ms (sample+cf), 23 ms (batch+cf), against 0.35 ms for the SGD
outer product.

Run: ``python benchmarks/bench_pulsed.py [--threads N] [--repeats R]``.
"""

from __future__ import annotations

import torch
from timing import paired_times, setup

from analoglib import devices as dv
from analoglib.tiles.pulse import PulseTrainParameters, pulse_counts

SHAPES = [(10, 784, 256), (10, 256, 128), (10, 128, 10)]


def main() -> None:
    args, _, _ = setup(__doc__.splitlines()[0], repeats=5)
    header = ("shape", "mode", "SGD ms", "pulsed ms", "ratio")
    print("{:>16} {:>9} {:>8} {:>10} {:>7}".format(*header))
    device = dv.SoftBoundsDevice(dw_min=0.001)
    params = PulseTrainParameters()
    lr = 0.1
    for batch, n_in, n_out in SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, n_in, generator=gen)
        d = 0.01 * torch.randn(batch, n_out, generator=gen)
        state = dv.sample_device_state(device, (n_out, n_in), gen)
        w = torch.zeros(n_out, n_in)

        def sgd(w: torch.Tensor = w, x: torch.Tensor = x, d: torch.Tensor = d) -> None:
            w.sub_(lr * d.T @ x)

        for aggregate, closed in (
            ("sample", False),
            ("batch", False),
            ("sample", True),
            ("batch", True),
        ):

            def pulsed(
                aggregate: str = aggregate,
                closed: bool = closed,
                x: torch.Tensor = x,
                d: torch.Tensor = d,
                state: dv.DeviceState = state,
                w: torch.Tensor = w,
                gen: torch.Generator = gen,
            ) -> None:
                counts = pulse_counts(x, d, lr, device.dw_min, params, gen, aggregate)
                dv.apply_pulse_counts(w, counts, state, device, gen, aggregate, closed)

            t_sgd, t_pulsed = paired_times(sgd, pulsed, args.repeats)
            shape = f"{batch}x{n_in}->{n_out}"
            mode = f"{aggregate}{'+cf' if closed else ''}"
            print(
                f"{shape:>16} {mode:>9} {1e3 * t_sgd:8.3f} {1e3 * t_pulsed:10.2f} "
                f"{t_pulsed / t_sgd:7.0f}"
            )


if __name__ == "__main__":
    main()
