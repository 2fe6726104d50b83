"""What the ratio benchmarks share: the layer shapes, the command line and the timer."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from analoglib.tiles.tile import set_fused_elementwise

# (batch, in, out): a small tile-sized layer and BERT-base's feed-forward pair.
SHAPES = [(64, 512, 512), (256, 768, 3072), (256, 3072, 768)]


def setup(description: str, repeats: int) -> tuple[argparse.Namespace, torch.device, Callable]:
    """Parse ``--threads``, ``--repeats`` and ``--device``, apply the threads, print the setup.

    Returns:
        ``(args, device, sync)``; ``sync()`` waits for the device (a no-op on the CPU).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=0, help="torch threads, 0 keeps default")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--fused",
        action="store_true",
        help="fuse the tile model's elementwise steps with torch.compile (opt-in; compiles "
        "during the warm-up calls)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fused:
        set_fused_elementwise(True)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}"
        + (", fused elementwise steps (torch.compile)" if args.fused else "")
    )
    return args, device, sync


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


def paired_times(
    plain: Callable[[], object], analog: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """``(plain, analog)`` median seconds; the plain one timed before and after, best kept.

    Timing the plain call on both sides of the analog one shares the machine's thermal and
    frequency conditions between the two.
    """
    t_plain = median_time(plain, repeats)
    t_analog = median_time(analog, repeats)
    return min(t_plain, median_time(plain, repeats)), t_analog
