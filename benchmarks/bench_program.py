"""Time ``program`` + ``drift`` for 85 M weights (the analog part of RoBERTa-base).

The model holds the linear layers of 12 RoBERTa-base encoder layers (query, key, value,
attention output 768x768; intermediate 768->3072; output 3072->768): 84.9 M weights. Reports
the seconds of ``program`` and of one ``drift`` and the memory of the programmed state
(programmed conductances, drift exponents, drifted weights, read-out baselines) relative to the
memory of the weights. Targets: program + drift under 10 s on a 2-core CPU; state under 5x.

Run: ``python benchmarks/bench_program.py [--layers 12]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import analoglib as al

_STATE = ("_g_prog", "_nu", "_g_scale", "_weight_t", "_gdc_baseline", "_gdc_alpha")


def roberta_base_linears(n_layers: int) -> nn.Sequential:
    """The mapped linear layers of ``n_layers`` RoBERTa-base encoder layers."""
    layers: list[nn.Module] = []
    for _ in range(n_layers):
        layers += [nn.Linear(768, 768) for _ in range(4)]
        layers += [nn.Linear(768, 3072), nn.Linear(3072, 768)]
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    digital = roberta_base_linears(args.layers).to(args.device)
    model = al.convert_to_analog(digital, al.presets.standard_hwa_2023())
    del digital
    n_weights = sum(layer.weight.numel() for layer in al.analog_layers(model))
    weight_bytes = sum(
        layer.weight.numel() * layer.weight.element_size() for layer in al.analog_layers(model)
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print(f"analog weights: {n_weights / 1e6:.1f} M in {len(al.analog_layers(model))} layers")
    print(al.summary(model).tail(1).to_string(index=False))

    start = time.perf_counter()
    al.program(model, seed=0)
    t_program = time.perf_counter() - start
    start = time.perf_counter()
    al.drift(model, 3600.0, seed=1)
    t_drift = time.perf_counter() - start

    state_bytes = 0
    for layer in al.analog_layers(model):
        for name in _STATE:
            tensor = getattr(layer, name)
            if tensor is not None:
                state_bytes += tensor.numel() * tensor.element_size()
    print(
        f"program: {t_program:.2f} s, drift(1 h): {t_drift:.2f} s, "
        f"total {t_program + t_drift:.2f} s (target < 10 s)"
    )
    print(
        f"programmed state: {state_bytes / 2**20:.0f} MiB = {state_bytes / weight_bytes:.2f}x "
        f"the weights ({weight_bytes / 2**20:.0f} MiB) (target < 5x)"
    )


if __name__ == "__main__":
    main()
