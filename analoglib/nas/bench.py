"""AnalogNAS-Bench: aihwkit-simulated CIFAR-10 accuracies of all 15,625 NAS-Bench-201 cells.

The data ship as ``analognasbench/data.anb`` (a pickle) in the PyPI package ``analog-nasbench``
0.1.3, installed by ``make data`` with ``--no-deps`` (asset ``analognas_bench`` of
``data/registry.yaml``). The package is never imported: its loader unpickles without
restrictions. :func:`load_analognas_bench` reads the file with an unpickler that resolves
exactly the two classes the file uses (to plain record classes of this module) and refuses any
other global, so a crafted file cannot run code.

Fields (accuracies in %, as the bench stores them): ``baseline`` (digital), ``ptq`` and ``qat``
(8-bit post-training and quantisation-aware), ``noisy`` (direct mapping, no drift), ``hwa``
(the HWA-trained model, no drift), and under drift at 60 s, 1 h, 1 d and 30 d
``direct_<t>`` (the digital model mapped directly) and ``hwa_<t>`` (the HWA model), each with
its spread over the bench's 25 evaluation runs (``*_std``; the bench calls it "uncertainty").

References:
    Benmeziane et al. 2023; ``docs/nas.md#analognas-bench``.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analoglib.nas.space import NB201_OPS

__all__ = [
    "BENCH_DRIFT_TIMES",
    "BenchFormatError",
    "bench_path",
    "load_analognas_bench",
]

#: Drift times of the bench (s): 60 s, 1 h, 1 day, 30 days.
BENCH_DRIFT_TIMES = (60, 3600, 86400, 2592000)
_PACKAGE = "analognasbench"
_INSTALL = (
    "install the data package with `make data` (pip install --no-deps analog-nasbench==0.1.3)"
)


class BenchFormatError(pickle.UnpicklingError):
    """The bench file references something other than its two record classes."""


class _Architecture:
    """Attribute bag for the bench's ``Architecture`` records (filled by the unpickler)."""


class _DriftMeasurement:
    """Attribute bag for ``DriftMeasurement`` (``value``, ``uncertainty``)."""


_ALLOWED = {
    (f"{_PACKAGE}.data", "Architecture"): _Architecture,
    (f"{_PACKAGE}.data", "DriftMeasurement"): _DriftMeasurement,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise BenchFormatError(
                f"the bench file references the global {module}.{name}; only "
                f"{sorted(f'{m}.{n}' for m, n in _ALLOWED)} are allowed, so it is not loaded."
            ) from None


def bench_path() -> Path:
    """Path of ``data.anb`` inside the installed ``analog-nasbench`` package (not imported).

    Raises:
        FileNotFoundError: If the package or its data file is missing.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {_PACKAGE!r} is not installed: {_INSTALL}.")
    path = Path(next(iter(spec.submodule_search_locations))) / "data.anb"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {_INSTALL}.")
    return path


def _drift(value: Any) -> tuple[float, float]:
    return float(value.value), float(value.uncertainty)


def load_analognas_bench(path: str | Path | None = None) -> pd.DataFrame:
    """The bench as a tidy table, one row per cell (15,625 rows for the published file).

    Args:
        path: The ``.anb`` file; the installed package's by default (:func:`bench_path`).

    Returns:
        Columns ``cell`` (tuple of six op indices), ``edge0``..``edge5``, ``n_<op>`` (how many
        edges use each op of :data:`~analoglib.nas.NB201_OPS`), ``baseline``, ``ptq``,
        ``qat``, ``noisy``, ``hwa``, ``direct_<t>``/``direct_<t>_std`` and
        ``hwa_<t>``/``hwa_<t>_std`` for t in :data:`BENCH_DRIFT_TIMES`, and ``avm_hwa`` (the
        HWA model's loss from 60 s to 30 days, points), sorted by cell.

    Raises:
        BenchFormatError: If the file references any global but the two record classes.
        FileNotFoundError: If the file is missing.
    """
    file = bench_path() if path is None else Path(path)
    with open(file, "rb") as handle:
        data = _RestrictedUnpickler(io.BytesIO(handle.read())).load()
    if not isinstance(data, dict):
        raise BenchFormatError(f"{file}: expected a dict of records, got {type(data).__name__}.")
    rows = []
    for cell, record in data.items():
        if not isinstance(record, _Architecture):
            raise BenchFormatError(f"{file}: record {cell!r} is a {type(record).__name__}.")
        fields = vars(record)
        row: dict[str, Any] = {"cell": tuple(int(v) for v in cell)}
        for name, key in (
            ("baseline", "baseline_accuracy"),
            ("ptq", "ptq_accuracy"),
            ("qat", "qat_accuracy"),
            ("noisy", "noisy_accuracy"),
            ("hwa", "analog_accuracy"),
        ):
            row[name] = float(fields[key])
        for t in BENCH_DRIFT_TIMES:
            row[f"direct_{t}"], row[f"direct_{t}_std"] = _drift(fields[f"baseline_drift_{t}"])
            row[f"hwa_{t}"], row[f"hwa_{t}_std"] = _drift(fields[f"analog_drift_{t}"])
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("cell", ignore_index=True)
    ops = np.array(table["cell"].tolist(), dtype=int).reshape(len(table), -1)  # (n, 6)
    for edge in range(ops.shape[1]):
        table[f"edge{edge}"] = ops[:, edge]
    for index, op in enumerate(NB201_OPS):
        table[f"n_{op}"] = (ops == index).sum(axis=1)
    table["avm_hwa"] = table[f"hwa_{BENCH_DRIFT_TIMES[0]}"] - table[f"hwa_{BENCH_DRIFT_TIMES[-1]}"]
    return table
