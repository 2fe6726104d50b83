"""Analog forward cost as a ratio to plain ``torch.nn.Linear`` on the same input, same run.

Shapes (batch x in -> out): 64x512->512, 256x768->3072, 256x3072->768. Two configs: the full
standard model (``standard_hwa_2023``, programmed and drifted to 1 h) and I/O only (DAC and
ADC quantisation plus output noise). Targets: full model <= 4x, I/O only <= 1.5x.

Run: ``python benchmarks/bench_forward.py [--threads N] [--repeats R]``.
"""

from __future__ import annotations

import torch
from timing import SHAPES, paired_times, setup
from torch import nn

import analoglib as al


def io_only() -> al.PCMConfig:
    """Standard model with only DAC/ADC quantisation and output noise left on."""
    config = al.presets.standard_hwa_2023()
    config.forward.w_noise = 0.0
    config.forward.w_noise_type = "none"
    config.forward.ir_drop = 0.0
    config.noise_model.prog_noise_scale = 0.0
    config.noise_model.drift_scale = 0.0
    config.noise_model.read_noise_scale = 0.0
    config.drift_compensation.type = "none"
    return config


def main() -> None:
    args, device, sync = setup(__doc__.splitlines()[0], repeats=20)
    header = ("shape", "config", "linear ms", "analog ms", "ratio", "target")
    print("{:>18} {:>9} {:>10} {:>10} {:>6} {:>6}".format(*header))
    torch.manual_seed(0)
    for batch, n_in, n_out in SHAPES:
        linear = nn.Linear(n_in, n_out, device=device).eval()
        x = torch.randn(batch, n_in, device=device)
        for name, config, target in (
            ("standard", al.presets.standard_hwa_2023(), 4.0),
            ("io_only", io_only(), 1.5),
        ):
            analog = al.convert_to_analog(linear, config)
            al.program(analog, seed=0)
            al.drift(analog, 3600.0, seed=1)

            def run_linear(module: nn.Module = linear, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    module(x)
                sync()

            def run_analog(module: nn.Module = analog, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    module(x)
                sync()

            t_linear, t_analog = paired_times(run_linear, run_analog, args.repeats)
            ratio = t_analog / t_linear
            shape = f"{batch}x{n_in}->{n_out}"
            print(
                f"{shape:>18} {name:>9} {t_linear * 1e3:10.3f} {t_analog * 1e3:10.3f} "
                f"{ratio:6.2f} {target:6.1f}"
            )


if __name__ == "__main__":
    main()
