"""aihwkit's training device presets, with their published numbers.

Each function returns a fresh device; :data:`DEVICE_PRESETS` maps aihwkit's class names of
single devices (``PulsedDevice``) to them and :data:`UNIT_CELL_PRESETS` those of unit cells
(:class:`~analoglib.devices.unit_cell.OneSidedPair`, two devices per weight).

References:
    Gong et al. 2018 (ReRAM fits); Tang et al. 2018 and Kim et al. 2019 (ECRAM); Gokmen &
    Vlasov 2016; Gong, Rasch et al. 2022 (measured ReRAM arrays); Li et al. 2018
    (capacitor); Nandakumar et al. 2020 (PCM); ``docs/devices.md#presets``.
"""

from __future__ import annotations

from collections.abc import Callable

from analoglib.devices.pulsed import (
    ConstantStepDevice,
    ExpStepDevice,
    LinearStepDevice,
    PulsedDevice,
    SoftBoundsReferenceDevice,
)
from analoglib.devices.unit_cell import OneSidedPair

__all__ = [
    "DEVICE_PRESETS",
    "UNIT_CELL_PRESETS",
    "capacitor",
    "ecram",
    "ecram_mo",
    "gokmen_vlasov",
    "idealized",
    "pcm",
    "pcm_pair",
    "reram_array_hfo2",
    "reram_array_om",
    "reram_es",
    "reram_sb",
]


def reram_es() -> ExpStepDevice:
    """ReRAM, exponential-step fit to Gong et al. 2018 (aihwkit ``ReRamESPresetDevice``)."""
    return ExpStepDevice(
        dw_min=0.00135, up_down=0.259359, w_max=1.0, w_min=-1.0,
        a=-0.5, b=-0.5, gamma_up=5.0, gamma_down=5.0, A_up=-1.18445, A_down=-0.081404,
        dw_min_dtod=0.2, up_down_dtod=0.05, w_max_dtod=0.3, w_min_dtod=0.3,
        dw_min_std=5.0, write_noise_std=75.0,
    )  # fmt: skip


def reram_sb() -> SoftBoundsReferenceDevice:
    """ReRAM, loose soft-bounds fit to Gong et al. 2018 (aihwkit ``ReRamSBPresetDevice``).

    Assumes the symmetric point was calibrated away (``up_down`` 0).
    """
    return SoftBoundsReferenceDevice(
        dw_min=0.002, up_down=0.0, w_max=1.25, w_min=-0.75, mult_noise=False,
        dw_min_dtod=0.3, up_down_dtod=0.01, w_max_dtod=0.3 / 1.25, w_min_dtod=0.3 / 0.75,
        dw_min_std=3.75, write_noise_std=56.0,
    )  # fmt: skip


def ecram() -> LinearStepDevice:
    """Lithium ECRAM, linear-step fit to Tang et al. 2018 (aihwkit ``EcRamPresetDevice``)."""
    return LinearStepDevice(
        dw_min=0.002, up_down=0.0, w_max=1.1724, w_min=-0.8276, mult_noise=True,
        gamma_up=0.1153, gamma_down=0.5085, dw_min_dtod=0.1, up_down_dtod=0.01,
        w_max_dtod=0.05, w_min_dtod=0.05, gamma_up_dtod=0.05, gamma_down_dtod=0.05,
        dw_min_std=0.3, mean_bound_reference=True,
    )  # fmt: skip


def ecram_mo() -> LinearStepDevice:
    """Metal-oxide ECRAM after Kim et al. 2019 (aihwkit ``EcRamMOPresetDevice``)."""
    return LinearStepDevice(
        dw_min=2.8214e-4, up_down=0.0, w_max=1.1714, w_min=-0.8286, mult_noise=True,
        gamma_up=0.4152, gamma_down=0.7342, dw_min_dtod=0.1, up_down_dtod=0.01,
        w_max_dtod=0.05, w_min_dtod=0.05, gamma_up_dtod=0.05, gamma_down_dtod=0.05,
        dw_min_std=2.0, mean_bound_reference=True,
    )  # fmt: skip


def idealized() -> ConstantStepDevice:
    """Symmetric constant-step device with 10,000 states (aihwkit ``IdealizedPresetDevice``)."""
    return ConstantStepDevice(
        dw_min=0.0002, dw_min_dtod=0.3, dw_min_std=0.3, up_down=0.0, up_down_dtod=0.0,
        w_max=1.0, w_min=-1.0, w_max_dtod=0.3, w_min_dtod=0.3,
    )  # fmt: skip


def gokmen_vlasov() -> ConstantStepDevice:
    """The device of Gokmen & Vlasov 2016 on +-1 (aihwkit ``GokmenVlasovPresetDevice``)."""
    return ConstantStepDevice(
        dw_min=0.0016, dw_min_dtod=0.3, dw_min_std=0.3, up_down=0.0, up_down_dtod=0.01,
        w_max=1.0, w_min=-1.0, w_max_dtod=0.3, w_min_dtod=0.3,
    )  # fmt: skip


def reram_array_om() -> SoftBoundsReferenceDevice:
    """Measured "optimized material" ReRAM array, Gong, Rasch et al. 2022.

    aihwkit ``ReRamArrayOMPresetDevice``: log-normal step spread, the symmetric point
    subtracted with a 5 % reference error; the array's 13.5 % corrupt devices are left out
    (as aihwkit's default).
    """
    return SoftBoundsReferenceDevice(
        enforce_consistency=True, dw_min_dtod_log_normal=True, dw_min=0.0949, up_down=0.0,
        w_max=1.0, w_min=-1.0, mult_noise=False, dw_min_dtod=0.7829, up_down_dtod=0.01,
        w_max_dtod=0.3499, w_min_dtod=0.5695, dw_min_std=0.4158, write_noise_std=1.4113,
        subtract_symmetry_point=True, reference_std=0.05,
    )  # fmt: skip


def reram_array_hfo2() -> SoftBoundsReferenceDevice:
    """Measured "baseline HfO2" ReRAM array, Gong, Rasch et al. 2022.

    aihwkit ``ReRamArrayHfO2PresetDevice`` (the array's 10 % corrupt devices left out).
    """
    return SoftBoundsReferenceDevice(
        enforce_consistency=True, dw_min_dtod_log_normal=True, dw_min=0.4622, up_down=0.0,
        w_max=1.0, w_min=-1.0, mult_noise=False, dw_min_dtod=0.7125, up_down_dtod=0.01,
        w_max_dtod=0.4295, w_min_dtod=0.5990, dw_min_std=0.2174, write_noise_std=0.5841,
        subtract_symmetry_point=True, reference_std=0.05,
    )  # fmt: skip


def capacitor() -> LinearStepDevice:
    """Capacitor cell, linear-step fit to Li et al. 2018 (aihwkit ``CapacitorPresetDevice``).

    The capacitor leaks: ``lifetime`` 1e6 decay calls (mini-batches) with 30 % device-to-device
    spread, toward the reset value 0 (:func:`analoglib.devices.effects.decay_weights`). As
    aihwkit warns, the right lifetime depends on how much physical time one mini-batch takes.
    """
    return LinearStepDevice(
        dw_min=0.005, up_down=0.0, w_max=1.0, w_min=-1.0, mult_noise=False,
        gamma_up=0.05, gamma_down=0.05, dw_min_dtod=0.1, up_down_dtod=0.06,
        w_max_dtod=0.07, w_min_dtod=0.07, gamma_up_dtod=0.01, gamma_down_dtod=0.01,
        dw_min_std=0.3, write_noise_std=0.0, mean_bound_reference=True,
        lifetime=1.0e6, lifetime_dtod=0.3,
    )  # fmt: skip


def pcm() -> ExpStepDevice:
    """One-sided GST PCM device, exponential-step fit to Nandakumar et al. 2020.

    aihwkit ``PCMPresetDevice``: conductance in [0, 2] (``w_min`` 0, no spread), large first
    steps that shrink with the conductance, the complex cycle-to-cycle noise of
    :class:`~analoglib.devices.pulsed.ExpStepDevice`, and a reset to 0.01 (2 % device-to-device
    spread, aihwkit's default 1 % cycle-to-cycle). Only usable as a refreshed pair
    (:func:`pcm_pair`).
    """
    return ExpStepDevice(
        dw_min=0.01, up_down=0.0, w_max=2.0, w_min=0.0,
        a=-1.0, b=0.0, gamma_up=2.5, gamma_down=2.5, A_up=-27.235, A_down=-2.235,
        dw_min_dtod=0.2, up_down_dtod=0.05, w_max_dtod=0.1, w_min_dtod=0.0,
        dw_min_std=0.6, dw_min_std_add=0.042, dw_min_std_slope=0.108, write_noise_std=0.0,
        reset=0.01, reset_dtod=0.02, reset_std=0.01,
    )  # fmt: skip


def pcm_pair() -> OneSidedPair:
    """Two PCM devices per weight with refresh (aihwkit ``PCMPresetUnitCell``).

    Refresh checked after every mini-batch (``refresh_every`` 1 in mini-batches), thresholds
    0.75/0.25 of ``w_max``, refresh write of at most 31 pulses (the preset's
    ``desired_bl``).
    """
    return OneSidedPair(
        device=pcm(),
        refresh_every=1,
        units_in_mbatch=True,
        refresh_upper_thres=0.75,
        refresh_lower_thres=0.25,
        refresh_max_pulses=31,
    )


#: aihwkit preset class name -> function returning the device.
DEVICE_PRESETS: dict[str, Callable[[], PulsedDevice]] = {
    "ReRamESPresetDevice": reram_es,
    "ReRamSBPresetDevice": reram_sb,
    "EcRamPresetDevice": ecram,
    "EcRamMOPresetDevice": ecram_mo,
    "IdealizedPresetDevice": idealized,
    "GokmenVlasovPresetDevice": gokmen_vlasov,
    "ReRamArrayOMPresetDevice": reram_array_om,
    "ReRamArrayHfO2PresetDevice": reram_array_hfo2,
    "CapacitorPresetDevice": capacitor,
    "PCMPresetDevice": pcm,
}

#: aihwkit unit-cell preset class name -> function returning the pair.
UNIT_CELL_PRESETS: dict[str, Callable[[], OneSidedPair]] = {
    "PCMPresetUnitCell": pcm_pair,
}
