"""HWA training-step cost as a ratio to a plain ``torch.nn.Linear`` training step, same run.

One step is forward, backward and an SGD update on a mean-squared loss; the analog step adds
what HWA training does around it (``al.training.post_update_step``: clipping and remapping).
Shapes (batch x in -> out) as in ``bench_forward.py``. Two training configs, both with the full
standard forward model (DAC/ADC, IR drop, output noise) and learned input ranges:

* ``pcm_noise``: the CNN/RNN recipe's PCM-like programming noise, std 3.0 (one draw per
  mini-batch), fixed clipping at 1, channelwise remapping;
* ``add_normal``: the transformer recipe's additive noise 0.06 with 3-sigma per-tile clipping.

Run: ``python benchmarks/bench_train.py [--threads N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import analoglib as al

SHAPES = [(64, 512, 512), (256, 768, 3072), (256, 3072, 768)]


def training_configs() -> dict[str, al.PCMConfig]:
    """The two HWA training configs described in the module docstring."""
    pcm = al.presets.standard_hwa_2023()
    pcm.modifier.type = "pcm_noise"
    pcm.modifier.std_dev = 3.0
    additive = al.presets.standard_hwa_2023()
    additive.modifier.type = "add_normal"
    additive.modifier.std_dev = 0.06
    additive.clip.type = "layer_gaussian"
    additive.clip.sigma = 3.0
    return {"pcm_noise": pcm, "add_normal": additive}


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median of ``repeats`` timings after two warm-up calls (seconds)."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_step(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, analog: bool, sync: Callable[[], None]
) -> Callable[[], None]:
    """A closure that runs one SGD step of ``model`` on ``(x, target)``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        if analog:
            al.training.post_update_step(model)
        sync()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads, 0 keeps default")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    header = ("shape", "config", "linear ms", "analog ms", "ratio")
    print("{:>18} {:>10} {:>10} {:>10} {:>6}".format(*header))
    torch.manual_seed(0)
    for batch, n_in, n_out in SHAPES:
        x = torch.randn(batch, n_in, device=device)  # (batch, n_in)
        target = torch.randn(batch, n_out, device=device)  # (batch, n_out)
        linear = nn.Linear(n_in, n_out, device=device).train()
        run_linear = training_step(linear, x, target, analog=False, sync=sync)
        for name, config in training_configs().items():
            analog = al.convert_to_analog(nn.Linear(n_in, n_out), config, seed=0).to(device)
            run_analog = training_step(analog.train(), x, target, analog=True, sync=sync)
            # Time the plain step again after the analog one to share machine conditions.
            t_linear = median_time(run_linear, args.repeats)
            t_analog = median_time(run_analog, args.repeats)
            t_linear = min(t_linear, median_time(run_linear, args.repeats))
            shape = f"{batch}x{n_in}->{n_out}"
            print(
                f"{shape:>18} {name:>10} {t_linear * 1e3:10.3f} {t_analog * 1e3:10.3f} "
                f"{t_analog / t_linear:6.2f}"
            )


if __name__ == "__main__":
    main()
