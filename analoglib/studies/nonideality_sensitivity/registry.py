"""The registry of nonidealities a sensitivity sweep scales, and their grids.

Each :class:`Nonideality` knows its standard value, how a grid value maps into a
:class:`~analoglib.config.PCMConfig`, its kind (``"factor"`` relative to the standard value,
``"bits"`` of a converter, or ``"absolute"`` for knobs whose standard value is 0), the
direction in which it raises the MVM error, its family and a label.

References:
    Rasch et al. 2023 (Figs. 4 and 5); ``docs/model.md#standard-model``,
    ``docs/published-results.md#rasch-2023``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analoglib.config import PCMConfig, bits_to_res
from analoglib.presets import standard_hwa_2023

__all__ = [
    "FORMAT_VERSION",
    "ISO_ACCURACY",
    "KINDS",
    "NONIDEALITIES",
    "STANDARD",
    "Nonideality",
    "config_of",
    "default_grids",
    "get_nonideality",
    "registry_table",
]


log = logging.getLogger(__name__)

#: Kinds of grid: a factor on the standard value, converter bits, or an absolute value.
KINDS = ("factor", "bits", "absolute")
#: Name of the pseudo-nonideality that stands for the standard model.
STANDARD = "standard"
#: Version of the sweep file format (part of every file's parameters).
FORMAT_VERSION = 2  # 2: common random numbers across the points of a repetition
#: Iso-accuracy threshold on A*_1h (``docs/model.md#metrics``).
ISO_ACCURACY = 0.99


@dataclass(frozen=True)
class Nonideality:
    """One knob of the standard model that a sweep scales.

    Attributes:
        name: Registry name (``"out_noise"``).
        label: Axis and legend label.
        kind: ``"factor"`` (grid values multiply the standard value), ``"bits"`` (grid values
            are converter bits; 8 is standard) or ``"absolute"`` (grid values are the field's
            value; used where the standard value is 0).
        group: Config group of the field (``"forward"`` or ``"noise_model"``).
        field: Config field set by the grid value.
        standard: The field's value in the standard model (for ``"bits"``: 8 bits).
        family: ``"input/output"`` (noise and distortion at the converters and periphery),
            ``"weight"`` (device-level: programming, read noise, drift, stuck devices) or
            ``"other"`` (IR drop), for the comparison at equal MVM error.
        fixed: Further fields set whenever the knob is applied (e.g. the stuck kind).
        unit: What an ``"absolute"`` grid value is (x-axis label), e.g. "fraction of devices".
    """

    name: str
    label: str
    kind: str
    group: str
    field: str
    standard: float
    family: str
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unit: str = "value"

    @property
    def standard_value(self) -> float:
        """The grid value of the standard model: 1 (factor), 8 (bits) or the standard value."""
        return 1.0 if self.kind == "factor" else float(self.standard)

    @property
    def error_direction(self) -> int:
        """+1 if a larger grid value raises the MVM error, -1 if it lowers it (bits)."""
        return -1 if self.kind == "bits" else 1

    def check_value(self, value: Any) -> float:
        """Validate one grid value.

        Raises:
            ValueError: If it is not a finite number >= 0, or not an integer >= 2 for bits, or
                above 1 for a device fraction.
        """
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if not ok or not math.isfinite(float(value)) or float(value) < 0:
            raise ValueError(
                f"{self.name}: grid value {value!r} is not allowed: expected a finite number >= 0."
            )
        if self.kind == "bits" and (float(value) != int(value) or int(value) < 2):
            raise ValueError(
                f"{self.name}: grid value {value!r} is not allowed: expected a whole number of "
                "bits >= 2."
            )
        if self.field == "stuck_fraction" and float(value) > 1:
            raise ValueError(
                f"{self.name}: grid value {value!r} is not allowed: expected a device fraction "
                "in [0, 1]."
            )
        return float(value)

    def field_value(self, value: float) -> Any:
        """The config field's value for a grid value."""
        value = self.check_value(value)
        if self.kind == "bits":
            return bits_to_res(int(value))
        if self.kind == "factor":
            return self.standard * value
        return value

    def apply(self, config: PCMConfig, value: float) -> PCMConfig:
        """Set this knob of ``config`` (in place) to the grid value; returns ``config``."""
        group = getattr(config, self.group)
        for name, fixed in self.fixed.items():
            setattr(group, name, fixed)
        setattr(group, self.field, self.field_value(value))
        return config

    def config(self, value: float, base: PCMConfig | None = None) -> PCMConfig:
        """A copy of ``base`` (default: the standard model) with this knob at ``value``."""
        config = standard_hwa_2023() if base is None else base.copy()
        return self.apply(config, value)

    def is_standard(self, value: float) -> bool:
        """Whether the grid value is the standard model's setting."""
        return self.check_value(value) == self.standard_value

    def format_value(self, value: float) -> str:
        """Short text of a grid value: ``2×``, ``6 bit`` or ``0.01``."""
        if self.kind == "bits":
            return f"{int(value)} bit"
        if self.kind == "factor":
            return f"{value:.3g}×"
        return f"{value:.3g}"

    @property
    def value_label(self) -> str:
        """What a grid value is, with its unit (the x-axis label of a sweep panel)."""
        if self.kind == "bits":
            return "Resolution (bits)"
        if self.kind == "factor":
            return "Scale (× standard value)"
        return self.unit[:1].upper() + self.unit[1:]


def _nonidealities() -> dict[str, Nonideality]:
    standard = standard_hwa_2023()
    fwd, pcm = standard.forward, standard.noise_model
    items = [
        Nonideality("dac_bits", "DAC resolution", "bits", "forward", "inp_res", 8, "input/output"),
        Nonideality("adc_bits", "ADC resolution", "bits", "forward", "out_res", 8, "input/output"),
        Nonideality(
            "out_noise", "Output noise", "factor", "forward", "out_noise", fwd.out_noise,
            "input/output",
        ),
        Nonideality(
            "out_nonlinearity", "ADC S-nonlinearity", "absolute", "forward", "out_nonlinearity",
            fwd.out_nonlinearity, "input/output", unit="nonlinearity strength",
        ),
        Nonideality(
            "w_noise", "Short-term read noise", "factor", "forward", "w_noise", fwd.w_noise,
            "weight",
        ),
        Nonideality(
            "prog_noise", "Programming noise", "factor", "noise_model", "prog_noise_scale",
            pcm.prog_noise_scale, "weight",
        ),
        Nonideality(
            "drift", "Drift", "factor", "noise_model", "drift_scale", pcm.drift_scale, "weight"
        ),
        Nonideality(
            "read_noise", "1/f read noise", "factor", "noise_model", "read_noise_scale",
            pcm.read_noise_scale, "weight",
        ),
        Nonideality("ir_drop", "IR drop", "factor", "forward", "ir_drop", fwd.ir_drop, "other"),
    ]  # fmt: skip
    for kind, label in (("reset", "at 0 µS"), ("g_max", "at g_max"), ("random", "at random")):
        items.append(
            Nonideality(
                f"stuck_{kind}",
                f"Stuck devices {label}",
                "absolute",
                "noise_model",
                "stuck_fraction",
                pcm.stuck_fraction,
                "weight",
                fixed={"stuck_kind": kind},
                unit="fraction of devices stuck",
            )
        )
    return {item.name: item for item in items}


#: The registry of sweepable nonidealities, by name.
NONIDEALITIES: dict[str, Nonideality] = _nonidealities()


def get_nonideality(name: str) -> Nonideality:
    """Registry entry by name.

    Raises:
        ValueError: If ``name`` is not registered.
    """
    if name not in NONIDEALITIES:
        raise ValueError(
            f"nonideality = {name!r} is not known: expected one of {', '.join(NONIDEALITIES)}."
        )
    return NONIDEALITIES[name]


def registry_table(names: Iterable[str] | None = None) -> pd.DataFrame:
    """What each nonideality sets: label, kind, family, config field and standard value."""
    rows = []
    for name in NONIDEALITIES if names is None else names:
        item = get_nonideality(name)
        fixed = "".join(f", {item.group}.{k} = {v!r}" for k, v in item.fixed.items())
        rows.append(
            {
                "nonideality": name,
                "label": item.label,
                "kind": item.kind,
                "family": item.family,
                "sets": f"{item.group}.{item.field}{fixed}",
                "standard value": item.standard,
                "grid value of the standard": item.standard_value,
            }
        )
    return pd.DataFrame(rows).set_index("nonideality")


def config_of(nonideality: str, value: float) -> PCMConfig:
    """The config of a sweep point: the standard model, or one nonideality at ``value``."""
    if nonideality == STANDARD:
        return standard_hwa_2023()
    return NONIDEALITIES[nonideality].config(value)


def default_grids(
    names: Iterable[str],
    scale_grid: Sequence[float],
    bits_grid: Sequence[int],
    absolute_grids: Mapping[str, Sequence[float]],
) -> dict[str, tuple[float, ...]]:
    """Grids per nonideality from one factor grid, one bits grid and per-knob absolute grids.

    Args:
        names: Nonidealities to sweep.
        scale_grid: Factors for every ``"factor"`` nonideality.
        bits_grid: Bits for the converters.
        absolute_grids: Grid per ``"absolute"`` nonideality, keyed by its config field
            (``"out_nonlinearity"``, ``"stuck_fraction"``) or by its name.

    Raises:
        ValueError: For an unknown name or a missing absolute grid.
    """
    grids: dict[str, tuple[float, ...]] = {}
    for name in names:
        item = get_nonideality(name)
        if item.kind == "factor":
            grids[name] = tuple(scale_grid)
        elif item.kind == "bits":
            grids[name] = tuple(float(b) for b in bits_grid)
        else:
            grid = absolute_grids.get(name, absolute_grids.get(item.field))
            if grid is None:
                raise ValueError(
                    f"no grid for {name!r}: absolute_grids needs a key {name!r} or {item.field!r}."
                )
            grids[name] = tuple(grid)
    return grids
