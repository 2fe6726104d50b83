"""aihwkit's training device presets, with their published numbers.

Each function returns a fresh device; :data:`DEVICE_PRESETS` maps aihwkit's class names to
them. Two aihwkit presets are not here yet: ``CapacitorPresetDevice`` (it leaks, which needs
the decay of ``lifetime``) and ``PCMPresetDevice`` (a one-sided device with reset, used as a
refreshed pair).

References:
    Gong et al. 2018 (ReRAM fits); Tang et al. 2018 and Kim et al. 2019 (ECRAM); Gokmen &
    Vlasov 2016; Gong, Rasch et al. 2022 (measured ReRAM arrays); ``docs/devices.md#presets``.
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

__all__ = [
    "DEVICE_PRESETS",
    "ecram",
    "ecram_mo",
    "gokmen_vlasov",
    "idealized",
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
}
