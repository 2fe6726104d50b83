"""Interactive nonideality explorer: one knob per nonideality of the standard model, live readings.

Notebook: ``notebooks/99_explorer.ipynb``. Each setting of the knobs (DAC and ADC bits, output
noise, programming- and read-noise scales, time after programming, IR drop, global drift
compensation, tile size) is one :class:`ExplorerSettings`; :func:`explore` turns it into a
:class:`~analoglib.config.PCMConfig` on top of the standard model of Rasch et al. 2023
(:func:`~analoglib.presets.standard_hwa_2023`) and measures

(a) the MVM error of a random weight matrix (:func:`~analoglib.metrics.random_tile_mvm_error`,
    the setting of Le Gallo et al. 2023), and
(b) the test accuracy of a small trained network, scikit-learn's digits on
    :class:`~analoglib.models.DigitsCNN`, programmed ``n_reps`` times and drifted.

The network is trained once and cached (:func:`prepare_explorer`), converted and
input-range-calibrated once per tile size (the tile size is structural: it fixes the tiles, so
a change converts again), and every other knob only swaps the run-time config
(:func:`~analoglib.nn.convert.replace_config`) before programming anew. Every update uses the
same seeds (common random numbers), so two settings differ by their physics, not by their
draws. :func:`build_explorer` wires ipywidgets controls to :func:`explore` for JupyterLab; the
library itself runs headless.

References:
    Rasch et al. 2023; Le Gallo et al. 2023; ``docs/model.md#standard-model``,
    ``docs/model.md#mvm-error``, ``docs/model.md#evaluation-times``,
    ``docs/model.md#calibration``.
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from analoglib.cache import atomic_save, json_normalized, key_digest
from analoglib.config import PCMConfig, bits_to_res
from analoglib.data.digits import TensorSplit, load_digits, make_loader
from analoglib.inference import drift, program, set_forward_seed
from analoglib.metrics import random_tile_mvm_error
from analoglib.models.digits import DigitsCNN
from analoglib.nn.convert import convert_to_analog, replace_config
from analoglib.optim import calibrate_input_ranges
from analoglib.plotting import subplots
from analoglib.presets import standard_hwa_2023
from analoglib.training.loops import accuracy, fit
from analoglib.utils import check_int, derive_seed, get_device, paths

__all__ = [
    "CACHE_FORMAT",
    "KNOBS",
    "MAX_BITS",
    "STANDARD",
    "STANDARD_T_INFERENCE_S",
    "STANDARD_TILE_SIZE",
    "STEM",
    "TEN_YEARS_S",
    "TILE_SIZES",
    "ExplorerApp",
    "ExplorerResult",
    "ExplorerSettings",
    "ExplorerState",
    "as_settings",
    "build_explorer",
    "explore",
    "format_duration_s",
    "load_or_train_digits_cnn",
    "plot_results",
    "prepare_explorer",
    "results_metrics",
    "results_table",
]

#: Notebook stem (results JSON and figure names).
STEM = "99_explorer"
#: Time after programming of the standard reading (s): 1 h, the headline time of Rasch 2023.
STANDARD_T_INFERENCE_S = 3600.0
#: Ten years (s), the right end of the drift-time slider.
TEN_YEARS_S = 10 * 365 * 86400.0
#: Tile sizes offered (crossbar rows; see :meth:`ExplorerSettings.config` for the columns).
TILE_SIZES = (64, 128, 256, 512)
#: Tile size (rows) of the standard model.
STANDARD_TILE_SIZE = 512
#: Largest converter resolution accepted (bits).
MAX_BITS = 16
#: Version of the cached digits-CNN checkpoint (part of its cache key).
CACHE_FORMAT = 1

#: Knob name -> (label, config field it sets), in the order of the controls.
KNOBS: dict[str, tuple[str, str]] = {
    "dac_bits": ("DAC bits", "forward.inp_res"),
    "adc_bits": ("ADC bits", "forward.out_res"),
    "out_noise": ("Output noise", "forward.out_noise"),
    "prog_noise_scale": ("Programming noise x", "noise_model.prog_noise_scale"),
    "read_noise_scale": ("1/f read noise x", "noise_model.read_noise_scale"),
    "t_inference_s": ("Time after programming (s)", "t_inference_s of program/drift"),
    "ir_drop": ("IR drop x", "forward.ir_drop"),
    "gdc": ("Global drift compensation", 'drift_compensation.type ("global"/"none")'),
    "tile_size": ("Tile size (rows)", "mapping.max_input_size, mapping.max_output_size"),
}

_SECONDS_PER = (("y", 365 * 86400.0), ("mo", 30 * 86400.0), ("d", 86400.0), ("h", 3600.0))


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{name} = {value!r} is not allowed: expected {allowed}.")


def _real(name: str, value: Any, minimum: float = 0.0) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < minimum:
        _fail(name, value, f"a finite number >= {minimum:g}")
    return float(value)


def _bits(name: str, value: Any) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not 2 <= int(value) <= MAX_BITS:
        _fail(name, value, f"a whole number of bits from 2 to {MAX_BITS}")
    return int(value)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` torch intra-op threads (0: leave the setting alone)."""
    if threads == 0:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def format_duration_s(seconds: float) -> str:
    """Short text of a time after programming: ``"20 s"``, ``"1 h"``, ``"3.5 d"``, ``"10 y"``.

    Args:
        seconds: Time (s), finite and >= 0.

    Returns:
        The time in the largest unit (s, min, h, d, mo of 30 d, y of 365 d) that keeps it >= 1,
        with 3 significant digits.

    Raises:
        ValueError: If ``seconds`` is negative or not a finite number.
    """
    seconds = _real("seconds", seconds)
    for unit, size in _SECONDS_PER:
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class ExplorerSettings:
    """One setting of the explorer's knobs; the defaults are the standard model at 1 h.

    Every value is checked when the settings are built; a bad one raises a ``ValueError``
    naming the field, the value and what is allowed. Settings are hashable (results are cached
    per setting).

    Attributes:
        dac_bits: DAC resolution (bits, 2 to :data:`MAX_BITS`); sets ``forward.inp_res`` to
            :func:`~analoglib.config.bits_to_res` (8 bit -> 254 steps, standard).
        adc_bits: ADC resolution (bits, 2 to :data:`MAX_BITS`); sets ``forward.out_res``.
        out_noise: Standard deviation of the additive output noise (normalised output units,
            >= 0; standard 0.04); sets ``forward.out_noise``.
        prog_noise_scale: Factor on the PCM programming-noise sigma (>= 0; standard 1).
        read_noise_scale: Factor on the accumulated 1/f read noise (>= 0; standard 1).
        t_inference_s: Time after programming (s, >= 0; standard 3600, i.e. 1 h).
        ir_drop: Scale of the IR-drop approximation (>= 0; 0 is off, standard 1).
        gdc: Global drift compensation on (``drift_compensation.type = "global"``, standard)
            or off (``"none"``).
        tile_size: Crossbar rows, one of :data:`TILE_SIZES` (standard 512).

    References:
        ``docs/model.md#standard-model``, ``docs/model.md#resolution``,
        ``docs/model.md#output-noise``, ``docs/model.md#programming-noise``,
        ``docs/model.md#read-noise``, ``docs/model.md#ir-drop``, ``docs/model.md#gdc``,
        ``docs/model.md#tiling``, ``docs/model.md#evaluation-times``.
    """

    dac_bits: int = 8
    adc_bits: int = 8
    out_noise: float = 0.04
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    t_inference_s: float = STANDARD_T_INFERENCE_S
    ir_drop: float = 1.0
    gdc: bool = True
    tile_size: int = STANDARD_TILE_SIZE

    def __post_init__(self) -> None:
        values: dict[str, Any] = {
            "dac_bits": _bits("dac_bits", self.dac_bits),
            "adc_bits": _bits("adc_bits", self.adc_bits),
        }
        for name in ("out_noise", "prog_noise_scale", "read_noise_scale", "t_inference_s"):
            values[name] = _real(name, getattr(self, name))
        values["ir_drop"] = _real("ir_drop", self.ir_drop)
        if not isinstance(self.gdc, bool):
            _fail("gdc", self.gdc, "True (global drift compensation) or False (none)")
        ok = isinstance(self.tile_size, numbers.Integral) and not isinstance(self.tile_size, bool)
        if not ok or int(self.tile_size) not in TILE_SIZES:
            _fail("tile_size", self.tile_size, f"one of {', '.join(map(str, TILE_SIZES))}")
        values["tile_size"] = int(self.tile_size)
        for name, value in values.items():  # plain int / float, so equal settings hash equally
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], base: ExplorerSettings | None = None
    ) -> ExplorerSettings:
        """Settings from a mapping of knob names to values; missing knobs keep ``base``'s.

        Args:
            values: Knob name -> value (e.g. ``{"out_noise": 0.16}``).
            base: Settings for the knobs not in ``values`` (default: :data:`STANDARD`).

        Returns:
            The new settings.

        Raises:
            ValueError: For a name that is not a knob, or a bad value.
        """
        if not isinstance(values, Mapping):
            _fail("settings", values, "an ExplorerSettings or a mapping of knob names to values")
        unknown = [key for key in values if key not in KNOBS]
        if unknown:
            raise ValueError(
                f"settings key {unknown[0]!r} is not known: expected one of {', '.join(KNOBS)}."
            )
        return dataclasses.replace(STANDARD if base is None else base, **dict(values))

    def replace(self, **changes: Any) -> ExplorerSettings:
        """A copy with some knobs changed (checked like the constructor's arguments).

        Args:
            **changes: Knob name -> new value.

        Returns:
            The new settings.

        Raises:
            ValueError: For a name that is not a knob, or a bad value.
        """
        return ExplorerSettings.from_mapping(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """The knobs as a plain dict (JSON-serialisable), in the order of :data:`KNOBS`."""
        return dataclasses.asdict(self)

    def config(self) -> PCMConfig:
        """The crossbar config of this setting: the standard model with the knobs applied.

        The tile size sets ``mapping.max_input_size``; ``mapping.max_output_size`` is the same
        value below 512 (square tiles) and 0 at the standard 512 (no output split, as in the
        standard model; the same crossbar for matrices with at most 512 columns, which covers
        the random tile and every layer of the digits CNN). The time after programming is not
        part of the config (it is an argument of ``drift``).

        Returns:
            A new :class:`~analoglib.config.PCMConfig`; for :data:`STANDARD` it equals
            :func:`~analoglib.presets.standard_hwa_2023` field for field.

        References:
            ``docs/presets.md#standard-hwa-2023``, ``docs/model.md#tiling``.
        """
        config = standard_hwa_2023()
        config.forward.inp_res = bits_to_res(self.dac_bits)
        config.forward.out_res = bits_to_res(self.adc_bits)
        config.forward.out_noise = self.out_noise
        config.forward.ir_drop = self.ir_drop
        config.noise_model.prog_noise_scale = self.prog_noise_scale
        config.noise_model.read_noise_scale = self.read_noise_scale
        config.drift_compensation.type = "global" if self.gdc else "none"
        config.mapping.max_input_size = self.tile_size
        config.mapping.max_output_size = (
            0 if self.tile_size == STANDARD_TILE_SIZE else self.tile_size
        )
        return config

    def format_value(self, name: str) -> str:
        """Short text of one knob's value (``"8"``, ``"0.04"``, ``"1 h"``, ``"on"``).

        Args:
            name: Knob name (a key of :data:`KNOBS`).

        Returns:
            The text.

        Raises:
            ValueError: If ``name`` is not a knob.
        """
        if name not in KNOBS:
            _fail("name", name, f"one of {', '.join(KNOBS)}")
        value = getattr(self, name)
        if name == "t_inference_s":
            return format_duration_s(value)
        if name == "gdc":
            return "on" if value else "off"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    def changes(self, other: ExplorerSettings | None = None) -> dict[str, Any]:
        """Knobs whose values differ from ``other`` (default: :data:`STANDARD`).

        Args:
            other: The reference settings.

        Returns:
            Knob name -> this setting's value, in the order of :data:`KNOBS`.
        """
        other = STANDARD if other is None else other
        return {k: getattr(self, k) for k in KNOBS if getattr(self, k) != getattr(other, k)}

    def describe(self) -> str:
        """``"standard"``, or the knobs that differ from it (``"out_noise 0.16, gdc off"``)."""
        changed = self.changes()
        if not changed:
            return "standard"
        return ", ".join(f"{name} {self.format_value(name)}" for name in changed)


#: The standard setting: :func:`~analoglib.presets.standard_hwa_2023`, 1 h after programming.
STANDARD = ExplorerSettings()


def as_settings(settings: ExplorerSettings | Mapping[str, Any]) -> ExplorerSettings:
    """``settings`` as :class:`ExplorerSettings` (a mapping overrides :data:`STANDARD`).

    Args:
        settings: Settings, or a mapping of knob names to values.

    Returns:
        The settings.

    Raises:
        ValueError: For anything else, an unknown knob or a bad value.
    """
    if isinstance(settings, ExplorerSettings):
        return settings
    return ExplorerSettings.from_mapping(settings)


@dataclass(frozen=True)
class ExplorerResult:
    """What :func:`explore` measured for one setting.

    Attributes:
        settings: The setting.
        mvm_error: Relative L2 MVM error of the random matrix (0.13 means 13 %).
        accuracy: Test accuracy of the digits CNN, mean over the programming repetitions.
        accuracy_std: Its standard deviation over the repetitions (0 for one repetition).
        accuracies: The accuracy of each repetition.
        fp_accuracy: Test accuracy of the floating-point model (the same test images).
        seconds: Wall-clock time of the computation (s).
    """

    settings: ExplorerSettings
    mvm_error: float
    accuracy: float
    accuracy_std: float
    accuracies: tuple[float, ...]
    fp_accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Settings and readings as one flat, JSON-serialisable dict."""
        return {
            **self.settings.to_dict(),
            "mvm_error": self.mvm_error,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "fp_accuracy": self.fp_accuracy,
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        return (
            f"{self.settings.describe()}: MVM error {self.mvm_error:.2%}, accuracy "
            f"{self.accuracy:.2%} ± {self.accuracy_std:.2%} over {len(self.accuracies)} "
            f"programming(s) (FP {self.fp_accuracy:.2%}), {self.seconds:.2f} s"
        )


def _digits_cnn_key(seed: int, epochs: int, batch_size: int, lr: float) -> dict[str, Any]:
    return {
        "kind": "explorer_digits_cnn",
        "format": CACHE_FORMAT,
        "model": "DigitsCNN(num_classes=10, channels=(16, 32), hidden=64)",
        "data": "sklearn digits, test_fraction 0.25",
        "optimizer": "adam",
        "device": "cpu",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
    }


def load_or_train_digits_cnn(
    split: TensorSplit,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    retrain: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> tuple[DigitsCNN, Path]:
    """The FP digits CNN of the explorer: trained once on the CPU, then loaded from the cache.

    The checkpoint (state dict and the parameters that made it) is written atomically to
    ``<cache_dir>/digits_cnn_<digest>.pt``, the digest hashing every training parameter
    (:func:`~analoglib.cache.key_digest`), so a changed parameter never reuses a stale model.
    Training always runs on the CPU (the model has 38 k weights), so the weights do not depend
    on the machine's accelerator.

    Args:
        split: The digits split of ``load_digits(seed)``.
        seed: Seed of the split, the model initialisation and the shuffling.
        epochs: Training epochs, >= 1.
        batch_size: Training batch size, >= 1.
        lr: Adam learning rate, > 0.
        retrain: Train even if a checkpoint exists (and overwrite it).
        progress: Show the training progress bar.
        cache_dir: Folder of the checkpoint (default ``data/cache/explorer``).

    Returns:
        The trained model (CPU, ``eval()`` mode) and the checkpoint path.

    Raises:
        ValueError: For a bad ``epochs``, ``batch_size`` or ``lr``.

    References:
        ``docs/development.md#caching``.
    """
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    lr = _real("lr", lr)
    if lr <= 0:
        _fail("lr", lr, "a learning rate > 0")
    key = json_normalized(_digits_cnn_key(seed, epochs, batch_size, lr))
    folder = paths.CACHE / "explorer" if cache_dir is None else Path(cache_dir)
    path = folder / f"digits_cnn_{key_digest(key)}.pt"
    with torch.random.fork_rng(devices=[]):  # the initialisation leaves the global RNG alone
        torch.manual_seed(derive_seed(seed, "explorer_init"))
        model = DigitsCNN()
    if path.exists() and not retrain:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint.get("parameters") == key:
            model.load_state_dict(checkpoint["state_dict"])
            return model.eval(), path
    loader = make_loader(split.x_train, split.y_train, batch_size, shuffle=True, seed=seed)
    losses = fit(model, loader, epochs, lr, seed=seed, progress=progress)
    atomic_save({"parameters": key, "state_dict": model.state_dict(), "losses": losses}, path)
    return model.eval(), path


@dataclass
class ExplorerState:
    """What :func:`explore` needs: the trained network, its data and the size of every update.

    Build it with :func:`prepare_explorer`. The analog models (one per tile size, converted
    and calibrated on first use) and the results (one per setting) are cached inside.

    Attributes:
        fp_model: The trained FP digits CNN (not modified).
        split: The digits split it was trained on.
        seed: Base seed of calibration, programming, drift, forward noise and random tile.
        n_reps: Programming repetitions per accuracy reading, >= 1.
        mvm_vectors: Input vectors of the random-matrix MVM error, >= 1.
        mvm_size: Rows and columns of the random matrix, >= 1 (512 is one standard tile).
        eval_images: Test images per accuracy reading; 0 means the whole test set (450).
        calibration_batches: Unshuffled training batches of the input-range calibration, >= 1.
        calibration_percentile: Each tile's input range as this percentile of its |inputs|.
        batch_size: Size of the calibration batches, >= 1.
        device: Device of the analog models and the test images.
        threads: Torch intra-op threads during an update, restored afterwards; 0 leaves
            torch's setting. 1 (the default) keeps an update near half a second on a busy
            machine: with 2 threads on 2 cores that other processes keep busy, OpenMP's
            spin waits made an update 10 to 50 times slower in our measurements.
        fp_accuracy: Test accuracy of ``fp_model`` on the same images (set on construction).

    Raises:
        ValueError: For a size or count out of range.
    """

    fp_model: nn.Module = field(repr=False)
    split: TensorSplit = field(repr=False)
    seed: int = 0
    n_reps: int = 3
    mvm_vectors: int = 100
    mvm_size: int = 512
    eval_images: int = 0
    calibration_batches: int = 4
    calibration_percentile: float = 99.995
    batch_size: int = 64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int = 1
    fp_accuracy: float = field(init=False, default=math.nan)
    _models: dict[int, nn.Module] = field(init=False, default_factory=dict, repr=False)
    _results: dict[ExplorerSettings, ExplorerResult] = field(
        init=False, default_factory=dict, repr=False
    )
    _test: list[tuple[Tensor, Tensor]] = field(init=False, default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_int("seed", self.seed, -(2**63))
        check_int("n_reps", self.n_reps, 1)
        check_int("mvm_vectors", self.mvm_vectors, 1)
        check_int("mvm_size", self.mvm_size, 1)
        check_int("eval_images", self.eval_images, 0)
        check_int("calibration_batches", self.calibration_batches, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("threads", self.threads, 0)
        percentile = _real("calibration_percentile", self.calibration_percentile)
        if not 0 < percentile <= 100:
            _fail("calibration_percentile", percentile, "a percentile in (0, 100]")
        self.device = torch.device(self.device)
        n = len(self.split.x_test) if self.eval_images == 0 else self.eval_images
        self._test = [  # one batch: (n, 1, 8, 8) images and (n,) labels
            (self.split.x_test[:n].to(self.device), self.split.y_test[:n].to(self.device))
        ]
        self.fp_model = self.fp_model.to(self.device).eval()
        self.fp_accuracy = accuracy(self.fp_model, self._test)

    @property
    def mvm_seed(self) -> int:
        """Seed passed to :func:`~analoglib.metrics.random_tile_mvm_error` by every update."""
        return derive_seed(self.seed, "explorer_mvm_error")

    def model_for(self, tile_size: int) -> nn.Module:
        """The converted, input-range-calibrated digits CNN on tiles of ``tile_size`` rows.

        Converted with the standard model at that tile size and calibrated on the first
        ``calibration_batches`` training batches in dataset order, on first use; cached.

        Args:
            tile_size: One of :data:`TILE_SIZES`.

        Returns:
            The analog model (its run-time config is replaced by every update).

        Raises:
            ValueError: If ``tile_size`` is not one of :data:`TILE_SIZES`.

        References:
            ``docs/model.md#calibration``, ``docs/model.md#tiling``.
        """
        if tile_size not in self._models:
            config = STANDARD.replace(tile_size=tile_size).config()
            loader = make_loader(self.split.x_train, self.split.y_train, self.batch_size)
            batches = []
            for index, (x, y) in enumerate(loader):
                if index >= self.calibration_batches:
                    break
                batches.append((x.to(self.device), y.to(self.device)))
            with _torch_threads(self.threads):
                model = convert_to_analog(self.fp_model, config)
                calibrate_input_ranges(
                    model,
                    batches,
                    percentile=self.calibration_percentile,
                    seed=derive_seed(self.seed, "explorer_calibration"),
                )
            self._models[tile_size] = model.eval()
        return self._models[tile_size]

    def cached(self, settings: ExplorerSettings) -> ExplorerResult | None:
        """The result of ``settings`` if it was computed before, else ``None``."""
        return self._results.get(settings)


def prepare_explorer(
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    n_reps: int = 3,
    mvm_vectors: int = 100,
    mvm_size: int = 512,
    eval_images: int = 0,
    calibration_batches: int = 4,
    calibration_percentile: float = 99.995,
    device: str | torch.device = "cpu",
    threads: int = 1,
    retrain: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> ExplorerState:
    """Load the digits, train (or load) the FP CNN and build the explorer's state.

    Args:
        seed: Base seed (split, training, calibration, programming, drift, random matrix).
        epochs: FP training epochs, >= 1.
        batch_size: Training and calibration batch size, >= 1.
        lr: Adam learning rate, > 0.
        n_reps: Programming repetitions per accuracy reading, >= 1.
        mvm_vectors: Input vectors of the random-matrix MVM error, >= 1.
        mvm_size: Rows and columns of the random matrix, >= 1.
        eval_images: Test images per accuracy reading; 0 means all 450.
        calibration_batches: Training batches of the input-range calibration, >= 1.
        calibration_percentile: Input range of each tile as this percentile of its |inputs|.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...: where the analog models run.
        threads: Torch intra-op threads while training and updating (see
            :class:`ExplorerState`); 0 leaves torch's setting.
        retrain: Train the FP model even if a cached checkpoint exists.
        progress: Show the training progress bar.
        cache_dir: Folder of the FP checkpoint (default ``data/cache/explorer``).

    Returns:
        The state; the analog model of the standard tile size is already prepared.

    Raises:
        ValueError: For a bad argument (the message names it).
    """
    check_int("seed", seed, -(2**63))
    check_int("threads", threads, 0)
    split = load_digits(seed=seed)
    with _torch_threads(threads):
        fp_model, _ = load_or_train_digits_cnn(
            split, seed, epochs, batch_size, lr, retrain, progress, cache_dir
        )
    state = ExplorerState(
        fp_model=fp_model,
        split=split,
        seed=seed,
        n_reps=n_reps,
        mvm_vectors=mvm_vectors,
        mvm_size=mvm_size,
        eval_images=eval_images,
        calibration_batches=calibration_batches,
        calibration_percentile=calibration_percentile,
        batch_size=batch_size,
        device=get_device(device),
        threads=threads,
    )
    state.model_for(STANDARD_TILE_SIZE)
    return state


def explore(
    settings: ExplorerSettings | Mapping[str, Any], state: ExplorerState, use_cache: bool = True
) -> ExplorerResult:
    """MVM error of a random matrix and digits-CNN accuracy for one setting.

    (a) :func:`~analoglib.metrics.random_tile_mvm_error` of ``settings.config()`` at
    ``settings.t_inference_s`` with ``state.mvm_seed``, ``state.mvm_size`` and
    ``state.mvm_vectors`` (for :data:`STANDARD` exactly what that function gives for
    :func:`~analoglib.presets.standard_hwa_2023`). (b) The analog digits CNN of the setting's
    tile size gets the setting's config (:func:`~analoglib.nn.convert.replace_config`); for
    each repetition r it is programmed, drifted to ``t_inference_s`` and read with seeds
    derived from ``(state.seed, r)`` only, so every setting sees the same draws; the reading
    is the test accuracy, as mean and standard deviation over ``state.n_reps`` repetitions.

    The result depends on ``settings`` and the state's sizes and seed only; it is cached in
    the state per setting (``use_cache=False`` computes it anew, e.g. to time it).

    Args:
        settings: The setting, or a mapping of knob names to values (others at standard).
        state: From :func:`prepare_explorer`.
        use_cache: Return a cached result of the same setting if there is one.

    Returns:
        The readings.

    Raises:
        ValueError: For an unknown knob or a bad value (the message names the knob).

    References:
        ``docs/model.md#mvm-error``, ``docs/model.md#programming``, ``docs/model.md#gdc``.
    """
    settings = as_settings(settings)
    if not isinstance(state, ExplorerState):
        _fail("state", state, "an ExplorerState (see prepare_explorer)")
    if use_cache and settings in state._results:
        return state._results[settings]
    start = time.perf_counter()
    config = settings.config()
    model = state.model_for(settings.tile_size)  # converts on the first use of a tile size
    accuracies = []
    with _torch_threads(state.threads):
        mvm = random_tile_mvm_error(
            config,
            t_inference_s=settings.t_inference_s,
            seed=state.mvm_seed,
            size=state.mvm_size,
            n_vectors=state.mvm_vectors,
        )
        replace_config(model, config)
        for rep in range(state.n_reps):
            program(model, derive_seed(state.seed, "explorer_program", rep))
            drift(model, settings.t_inference_s, derive_seed(state.seed, "explorer_drift", rep))
            set_forward_seed(model, derive_seed(state.seed, "explorer_forward", rep))
            accuracies.append(accuracy(model, state._test))
    values = torch.tensor(accuracies, dtype=torch.float64)
    result = ExplorerResult(
        settings=settings,
        mvm_error=mvm,
        accuracy=float(values.mean()),
        accuracy_std=float(values.std()) if len(accuracies) > 1 else 0.0,
        accuracies=tuple(accuracies),
        fp_accuracy=state.fp_accuracy,
        seconds=time.perf_counter() - start,
    )
    state._results[settings] = result
    return result


def results_table(results: Sequence[ExplorerResult]) -> pd.DataFrame:
    """One row per result: every knob, the readings and the compute time.

    Args:
        results: Results of :func:`explore`.

    Returns:
        A table indexed by the settings' :meth:`~ExplorerSettings.describe` text.
    """
    rows = [{"setting": r.settings.describe(), **r.to_dict()} for r in results]
    return pd.DataFrame(rows).set_index("setting")


def results_metrics(
    standard: ExplorerResult, modified: ExplorerResult
) -> dict[str, dict[str, Any] | float]:
    """The headline metrics of the notebook's results JSON (no timings: they are not stable).

    Args:
        standard: The result of :data:`STANDARD`.
        modified: The result of the modified setting.

    Returns:
        ``fp_accuracy`` and, for ``standard`` and ``modified``, ``mvm_error``,
        ``accuracy_mean`` and ``accuracy_std``.
    """

    def readings(result: ExplorerResult) -> dict[str, float]:
        return {
            "mvm_error": result.mvm_error,
            "accuracy_mean": result.accuracy,
            "accuracy_std": result.accuracy_std,
        }

    return {
        "fp_accuracy": standard.fp_accuracy,
        "standard": readings(standard),
        "modified": readings(modified),
    }


def plot_results(
    results: Sequence[ExplorerResult],
    standard: ExplorerResult | None = None,
    labels: Sequence[str] | None = None,
    fig: Figure | None = None,
) -> Figure:
    """MVM error and accuracy of a sequence of settings, with the standard setting marked.

    Two panels side by side: the MVM error (%) and the test accuracy (%, mean ± std over the
    programming repetitions) of each result, in order; the last one (the current setting) is
    drawn larger. The standard reading is a dashed line in each panel, the FP accuracy a
    dotted one.

    Args:
        results: The results to show (e.g. the explorer's history, the current one last).
        standard: The result of :data:`STANDARD` (no line if ``None``).
        labels: One x-tick label per result (default ``"1"``, ``"2"``, ...).
        fig: A figure to draw into (cleared first), e.g. the explorer's; default: a new
            double-column figure.

    Returns:
        The figure.

    Raises:
        ValueError: If ``results`` is empty or ``labels`` has another length.
    """
    if len(results) == 0:
        _fail("results", results, "at least one ExplorerResult")
    labels = [str(i + 1) for i in range(len(results))] if labels is None else list(labels)
    if len(labels) != len(results):
        _fail("labels", labels, f"{len(results)} labels, one per result")
    if fig is None:
        fig, axes = subplots(1, 2, width="double")
    else:
        fig.clear()
        axes = fig.subplots(1, 2)
    x = list(range(len(results)))
    mvm = [100 * r.mvm_error for r in results]
    acc = [100 * r.accuracy for r in results]
    std = [100 * r.accuracy_std for r in results]
    ax_mvm, ax_acc = axes
    ax_mvm.plot(x, mvm, marker="o", color="C0", lw=0.8, alpha=0.6)
    ax_mvm.plot(x[-1], mvm[-1], ls="", marker="o", markersize=8, color="C0", label="current")
    ax_acc.errorbar(x, acc, yerr=std, marker="o", color="C0", capsize=2, lw=0.8, alpha=0.6)
    ax_acc.plot(x[-1], acc[-1], ls="", marker="o", markersize=8, color="C0", label="current")
    top = max(mvm)
    if standard is not None:
        ax_mvm.axhline(100 * standard.mvm_error, ls="--", color="C1", label="standard")
        ax_acc.axhline(100 * standard.accuracy, ls="--", color="C1", label="standard")
        top = max(top, 100 * standard.mvm_error)
    ax_acc.axhline(100 * results[-1].fp_accuracy, ls=":", color="C2", label="FP")
    ax_mvm.set_ylabel("MVM error (%)")
    ax_acc.set_ylabel("Test accuracy (%)")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(labels)
        ax.set_xlabel("Setting")
        ax.set_xlim(-0.5, len(results) - 0.5)
    ax_mvm.set_ylim(0, 1.15 * top if top > 0 else 1.0)
    ax_acc.legend(loc="best")
    n_reps = max(len(r.accuracies) for r in results)
    ax_mvm.set_title("Random tile: MVM error")
    ax_acc.set_title(f"Digits CNN: test accuracy (bars: ±1 std, {n_reps} programmings)")
    return fig


@dataclass
class ExplorerApp:
    """The explorer's widgets, wired to :func:`explore` (built by :func:`build_explorer`).

    Attributes:
        state: The explorer state.
        widget: The top-level ipywidgets box (display it in a notebook).
        controls: Knob name -> its control widget.
        standard: The result of :data:`STANDARD`.
        history: The last results, the current one last (at most ``history_length``).
        history_length: Results kept in ``history`` and in the plot.
        figure: The Matplotlib figure drawn into the image widget.
        update: Read the controls, compute, redraw; returns the new result.
        reset: Set every control to the standard setting and update once.
    """

    state: ExplorerState
    widget: Any
    controls: dict[str, Any]
    standard: ExplorerResult
    history: list[ExplorerResult]
    history_length: int
    figure: Figure
    update: Callable[[], ExplorerResult]
    reset: Callable[[], ExplorerResult]

    def settings(self) -> ExplorerSettings:
        """The setting the controls show now."""
        values = {name: control.value for name, control in self.controls.items()}
        return ExplorerSettings.from_mapping(values)


def _readout_html(result: ExplorerResult, standard: ExplorerResult) -> str:
    """The table of the current setting beside the standard one, as HTML."""

    def row(label: str, current: str, std: str) -> str:
        weight = "bold" if current != std else "normal"
        return (
            f"<tr style='font-weight:{weight}'><td>{html.escape(label)}</td>"
            f"<td>{html.escape(current)}</td><td>{html.escape(std)}</td></tr>"
        )

    lines = ["<table><tr><th></th><th>current</th><th>standard</th></tr>"]
    for name, (label, _) in KNOBS.items():
        lines.append(
            row(label, result.settings.format_value(name), standard.settings.format_value(name))
        )
    lines.append(row("MVM error", f"{result.mvm_error:.2%}", f"{standard.mvm_error:.2%}"))
    lines.append(
        row(
            "Test accuracy",
            f"{result.accuracy:.2%} ± {result.accuracy_std:.2%}",
            f"{standard.accuracy:.2%} ± {standard.accuracy_std:.2%}",
        )
    )
    lines.append("</table>")
    lines.append(
        f"<p>FP accuracy {result.fp_accuracy:.2%}; {len(result.accuracies)} programming(s) per "
        f"reading; computed in {result.seconds:.2f} s. Bold rows differ from the standard.</p>"
    )
    return "".join(lines)


def build_explorer(
    state: ExplorerState, history_length: int = 8, png_dpi: int = 100
) -> ExplorerApp:
    """Sliders and switches for every knob, wired to :func:`explore`, with a live plot.

    One control per knob of :class:`ExplorerSettings`, starting at the standard setting:
    integer sliders for the converter bits, sliders for the output noise and the noise and
    IR-drop factors, a log slider from 1 s to 10 years for the time after programming, a
    checkbox for global drift compensation and a drop-down for the tile size. Releasing a
    control recomputes the readings (:func:`explore`, about a second on two CPU cores) and
    redraws the table of the current setting beside the standard one and the plot of the last
    ``history_length`` settings (:func:`plot_results`). The standard result is computed once,
    on building. Nothing is displayed here, so the app can be built headless (tests,
    papermill); display ``app.widget`` in a notebook.

    Args:
        state: From :func:`prepare_explorer`.
        history_length: Settings kept in the plot, >= 1.
        png_dpi: Resolution of the plot image (dots per inch), >= 10.

    Returns:
        The app: its widget, controls, history and the ``update`` and ``reset`` actions.

    Raises:
        ModuleNotFoundError: If ipywidgets is not installed (``pip install -e ".[notebooks]"``).
        ValueError: For a bad ``history_length`` or ``png_dpi``.
    """
    try:
        import ipywidgets as widgets
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            'build_explorer needs ipywidgets; install it with pip install -e ".[notebooks]".'
        ) from err
    check_int("history_length", history_length, 1)
    check_int("png_dpi", png_dpi, 10)
    standard = explore(STANDARD, state)

    wide = widgets.Layout(width="460px")
    style = {"description_width": "190px"}

    def slider(kind: Any, name: str, **kwargs: Any) -> Any:
        return kind(
            value=getattr(STANDARD, name),
            description=KNOBS[name][0],
            continuous_update=False,
            layout=wide,
            style=style,
            **kwargs,
        )

    controls: dict[str, Any] = {
        "dac_bits": slider(widgets.IntSlider, "dac_bits", min=2, max=10),
        "adc_bits": slider(widgets.IntSlider, "adc_bits", min=2, max=10),
        "out_noise": slider(
            widgets.FloatSlider, "out_noise", min=0.0, max=0.4, step=0.01, readout_format=".2f"
        ),
        "prog_noise_scale": slider(
            widgets.FloatSlider, "prog_noise_scale", min=0.0, max=5.0, step=0.1
        ),
        "read_noise_scale": slider(
            widgets.FloatSlider, "read_noise_scale", min=0.0, max=5.0, step=0.1
        ),
        "t_inference_s": slider(
            widgets.FloatLogSlider,
            "t_inference_s",
            base=10,
            min=0.0,
            max=math.log10(TEN_YEARS_S),
            step=0.05,
            readout_format=".3g",
        ),
        "ir_drop": slider(widgets.FloatSlider, "ir_drop", min=0.0, max=5.0, step=0.1),
        "gdc": widgets.Checkbox(
            value=STANDARD.gdc, description=KNOBS["gdc"][0], layout=wide, style=style
        ),
        "tile_size": widgets.Dropdown(
            options=list(TILE_SIZES),
            value=STANDARD.tile_size,
            description=KNOBS["tile_size"][0],
            layout=wide,
            style=style,
        ),
    }
    reset_button = widgets.Button(description="Reset to standard", icon="undo")
    status = widgets.HTML()
    readout = widgets.HTML()
    image = widgets.Image(format="png")
    fig, _ = subplots(1, 2, width="double")
    history: list[ExplorerResult] = []
    suspended = [False]

    def redraw(result: ExplorerResult) -> None:
        history.append(result)
        del history[:-history_length]
        labels = [str(i - len(history) + 1) for i in range(len(history))]
        labels[-1] = "now"
        plot_results(history, standard=standard, labels=labels, fig=fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=png_dpi)
        image.value = buffer.getvalue()
        readout.value = _readout_html(result, standard)

    def update() -> ExplorerResult:
        status.value = "<i>computing ...</i>"
        try:
            result = explore(app.settings(), state)
        except ValueError as err:
            status.value = f"<b>error:</b> {html.escape(str(err))}"
            raise
        redraw(result)
        status.value = f"<i>{html.escape(result.settings.describe())}</i>"
        return result

    def reset() -> ExplorerResult:
        suspended[0] = True
        try:
            for name, control in controls.items():
                control.value = getattr(STANDARD, name)
        finally:
            suspended[0] = False
        return update()

    def on_change(_: Any) -> None:
        if not suspended[0]:
            try:
                update()
            except ValueError:
                pass  # shown in the status line

    for control in controls.values():
        control.observe(on_change, names="value")
    reset_button.on_click(lambda _: reset())

    left = widgets.VBox([*controls.values(), reset_button, status])
    widget = widgets.VBox([widgets.HBox([left, readout]), image])
    app = ExplorerApp(
        state=state,
        widget=widget,
        controls=controls,
        standard=standard,
        history=history,
        history_length=history_length,
        figure=fig,
        update=update,
        reset=reset,
    )
    redraw(standard)
    status.value = "<i>standard</i>"
    import matplotlib.pyplot as plt

    plt.close(fig)  # drawn into the image widget only, never shown by the inline backend
    return app
