"""HWA training-step cost as a ratio to a plain ``torch.nn.Linear`` training step, same run.

One step is forward, backward and an SGD update on a mean-squared loss; the analog step adds
what HWA training does around it (``al.training.post_update_step``: clipping and remapping).
Shapes (batch x in -> out) as in ``bench_forward.py``. Two training configs, the default HWA
recipes' (``analoglib.studies.hwa_retraining.hwa_recipe``), both with the full standard
forward model (DAC/ADC, IR drop, output noise), learned input ranges, clipping at 1 and
channelwise remapping:

* ``pcm_noise``: the CNN recipe's PCM-like programming noise, std 3.0 (one draw per
  mini-batch);
* ``add_normal``: the transformer recipe's additive noise, 0.06 of the tile's abs-max.

Run: ``python benchmarks/bench_train.py [--threads N] [--repeats R]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timing import SHAPES, paired_times, setup
from torch import nn

import analoglib as al
from analoglib.studies import hwa_retraining


def training_configs() -> dict[str, al.PCMConfig]:
    """The default HWA training configs of the CNN and the transformer workloads."""
    return {
        "pcm_noise": hwa_retraining.hwa_recipe("cnn", "default")[1],
        "add_normal": hwa_retraining.hwa_recipe("transformer", "default")[1],
    }


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
    args, device, sync = setup(__doc__.splitlines()[0], repeats=10)
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
            t_linear, t_analog = paired_times(run_linear, run_analog, args.repeats)
            shape = f"{batch}x{n_in}->{n_out}"
            print(
                f"{shape:>18} {name:>10} {t_linear * 1e3:10.3f} {t_analog * 1e3:10.3f} "
                f"{t_analog / t_linear:6.2f}"
            )


if __name__ == "__main__":
    main()
