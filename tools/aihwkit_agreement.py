"""Standard-model MVM error of analoglib beside aihwkit 1.2.0's, for both pair models.

Usage:
    python tools/aihwkit_agreement.py [--seeds N]

The setting of ``docs/aihwkit.md#agreement``: one random 512 x 512 tile (weights N(0, 0.246)
clipped to [-1, 1]), 1,000 inputs uniform in [-1, 1], fixed input range 1.73, the standard
model (``standard_hwa_2023``) with global drift compensation. aihwkit's numbers were measured
with aihwkit 1.2.0 (CPU build) on the same setting and are printed for comparison. analoglib's
numbers are the mean and standard error over ``--seeds`` random matrices (each with its own
inputs, programming, drift and forward noise); one matrix's error scatters by about 0.05
points (standard deviation) around that mean.
"""

from __future__ import annotations

import argparse
import statistics

from analoglib.metrics import random_tile_mvm_error
from analoglib.presets import standard_hwa_2023

TIMES_S = {"1 s": 1.0, "1 h": 3600.0, "1 d": 86400.0, "1 y": 3.1536e7}
#: MVM error (%) of aihwkit 1.2.0 in this setting (``docs/aihwkit.md#agreement``).
AIHWKIT_1_2_0 = {"1 s": 12.42, "1 h": 14.08, "1 d": 15.84, "1 y": 19.91}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="random matrices averaged")
    args = parser.parse_args()
    print(f"{'pair model':<14}" + "".join(f"{t:>16}" for t in TIMES_S))
    for pair_model in ("net_weight", "two_devices"):
        config = standard_hwa_2023()
        config.noise_model.pair_model = pair_model
        cells = []
        for t in TIMES_S.values():
            errors = [
                100 * random_tile_mvm_error(
                    config, t, seed=seed, input_sparsity=0.0, input_range=1.73
                )
                for seed in range(args.seeds)
            ]  # fmt: skip
            se = statistics.stdev(errors) / len(errors) ** 0.5 if len(errors) > 1 else 0.0
            cells.append(f"{statistics.mean(errors):.2f} ± {se:.2f} %")
        print(f"{pair_model:<14}" + "".join(f"{c:>16}" for c in cells))
    print(f"{'aihwkit 1.2.0':<14}" + "".join(f"{e:>14.2f} %" for e in AIHWKIT_1_2_0.values()))


if __name__ == "__main__":
    main()
