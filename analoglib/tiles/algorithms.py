"""In-memory training algorithms: how the gradient reaches the devices.

* **Analog SGD** (:class:`AnalogSGD`): the pulsed rank-1 update ``W <- W - lr d x^T`` goes
  straight onto the weight devices.
* **Tiki-Taka family** (:class:`TransferParameters`): a fast array A receives the pulsed
  gradient; columns of A are read one at a time and transferred onto the slow array C, which
  the network uses (``W = gamma A + C``):

  - ``"ttv1"``: the read column is written onto C by a pulsed update of rate ``transfer_lr``;
  - ``"ttv2"``: reads accumulate in a digital buffer H (in units of C's pulses); where
    ``|H| >= 1`` a pulse is written to C and H is forgotten (``forget_buffer``) or reduced;
  - ``"c-ttv2"``: TTv2 with input choppers ``c = +-1``: A learns ``c * gradient`` and the
    read is multiplied by ``c`` again, so a constant offset of A's reads (for instance an error of
    the symmetric-point reference) alternates sign in H and averages out; choppers flip at
    random (``in_chop_prob`` per read of a column);
  - ``"agad"``: regular chopper periods and a *computed* reference: per weight, the mean of A's
    reads over the last chopper period is subtracted from the reads, so no reference array is
    needed.
* **Mixed precision** (:class:`MixedPrecisionParameters`): the gradient accumulates in a
  digital matrix chi; whole device steps ``trunc(chi / epsilon)`` are written as pulses and the
  remainder kept.

Field names and defaults follow aihwkit's compounds; :func:`ttv1`, :func:`ttv2`,
:func:`c_ttv2`, :func:`agad` and :func:`mixed_precision` give the settings of aihwkit's
``build_config``.

References:
    Gokmen & Haensch 2020 (Tiki-Taka); Gokmen 2021 (TTv2); Rasch et al. 2024 (c-TTv2, AGAD);
    Nandakumar et al. 2020 (mixed precision); ``docs/training.md#algorithms``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from analoglib.tiles.io import IOParameters
from analoglib.tiles.pulse import PulseTrainParameters

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AnalogSGD",
    "MixedPrecisionParameters",
    "TransferParameters",
    "agad",
    "c_ttv2",
    "mixed_precision",
    "ttv1",
    "ttv2",
]

#: Transfer algorithms of :class:`TransferParameters`.
TRANSFER_ALGORITHMS = ("ttv1", "ttv2", "c-ttv2", "agad")
#: Every algorithm name (``Algorithm.name``).
ALGORITHMS = ("sgd", *TRANSFER_ALGORITHMS, "mp")


def _positive(owner: str, name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{owner}.{name} = {value!r} is not allowed: expected a number {expected}."
        )


@dataclass(frozen=True)
class AnalogSGD:
    """Plain in-memory SGD: one pulsed device per weight."""

    name: ClassVar[str] = "sgd"

    def replace(self, **changes: Any) -> AnalogSGD:
        return dataclasses.replace(self, **changes)


def _transfer_io() -> IOParameters:
    return IOParameters(noise_management="none", bound_management="none")


def _one_pulse_update() -> PulseTrainParameters:
    return PulseTrainParameters(desired_bl=1, update_bl_management=False, update_management=False)


@dataclass(frozen=True)
class TransferParameters:
    """Tiki-Taka family (fields of aihwkit's transfer compounds).

    The names and defaults are those of ``TransferCompound``, ``ChoppedTransferCompound`` and
    ``DynamicTransferCompound``.

    Attributes:
        algorithm: One of ``"ttv1"``, ``"ttv2"``, ``"c-ttv2"``, ``"agad"``.
        gamma: Weight of A in the forward and backward reads ``W = gamma A + C``.
        fast_lr: Learning rate of the pulsed update onto A (absolute unless
            ``scale_fast_lr``; relative to the pulse budget with ``auto_scale``).
        scale_fast_lr: Multiply ``fast_lr`` by the optimiser's learning rate.
        auto_scale: ``lr_A = fast_lr * desired_bl * dw_min_A / (m_x m_d)`` with m_x, m_d
            running means of the batch's largest |x| and |d| (momentum ``auto_momentum``).
        auto_momentum: Momentum of those running means.
        transfer_lr: Rate of the transfer (times the optimiser's lr when
            ``scale_transfer_lr``).
        scale_transfer_lr: See ``transfer_lr``.
        transfer_every: Mat-vecs (samples) between transfers; mini-batches with
            ``units_in_mbatch``.
        units_in_mbatch: Count ``transfer_every`` in mini-batches.
        n_reads_per_transfer: Columns read per transfer.
        buffer_granularity: H's unit is ``buffer_granularity * dw_min_A`` of A's reads.
        auto_granularity: If > 0, the unit is multiplied by
            ``auto_granularity / (rows * transfer_every)``.
        momentum: Fraction of the transferred amount left on H.
        forget_buffer: After a write set H to ``momentum * H`` (True) or subtract
            ``(1 - momentum) * n`` (False).
        in_chop_prob: Chopper flip probability per read of a column (c-TTv2); for AGAD the
            chopper period is ``round(1 / in_chop_prob)`` reads.
        tail_weightening: AGAD's running-mean weight ``min(tail_weightening / period, 1)``.
        transfer_forward: Periphery of the reads of A.
        transfer_update: Pulse trains of the writes onto C.
    """

    algorithm: str = "ttv2"
    gamma: float = 0.0
    fast_lr: float = 1.0
    scale_fast_lr: bool = False
    auto_scale: bool = False
    auto_momentum: float = 0.99
    transfer_lr: float = 1.0
    scale_transfer_lr: bool = True
    transfer_every: int = 1
    units_in_mbatch: bool = False
    n_reads_per_transfer: int = 1
    buffer_granularity: float = 1.0
    auto_granularity: float = 0.0
    momentum: float = 0.0
    forget_buffer: bool = True
    in_chop_prob: float = 0.0
    tail_weightening: float = 5.0
    transfer_forward: IOParameters = field(default_factory=_transfer_io)
    transfer_update: PulseTrainParameters = field(default_factory=_one_pulse_update)

    def __post_init__(self) -> None:
        owner = "algorithm"
        if self.algorithm not in TRANSFER_ALGORITHMS:
            raise ValueError(
                f"{owner}.algorithm = {self.algorithm!r} is not allowed: expected one of "
                f"{TRANSFER_ALGORITHMS}."
            )
        for name in ("gamma", "auto_granularity", "momentum", "in_chop_prob"):
            _positive(owner, name, getattr(self, name), allow_zero=True)
        for name in ("fast_lr", "transfer_lr", "buffer_granularity", "tail_weightening"):
            _positive(owner, name, getattr(self, name))
        if not 0 <= self.momentum < 1:
            raise ValueError(
                f"{owner}.momentum = {self.momentum!r} is not allowed: expected [0, 1)."
            )
        if not 0 <= self.auto_momentum < 1:
            raise ValueError(
                f"{owner}.auto_momentum = {self.auto_momentum!r} is not allowed: expected [0, 1)."
            )
        if self.in_chop_prob > 1:
            raise ValueError(
                f"{owner}.in_chop_prob = {self.in_chop_prob!r} is not allowed: expected [0, 1]."
            )
        if self.algorithm == "agad" and self.in_chop_prob == 0:
            raise ValueError("algorithm.in_chop_prob = 0 is not allowed for 'agad': expected > 0.")
        for name in ("transfer_every", "n_reads_per_transfer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{owner}.{name} = {value!r} is not allowed: expected an integer >= 1."
                )

    @property
    def name(self) -> str:
        return self.algorithm

    @property
    def buffered(self) -> bool:
        """True for the algorithms with a digital buffer H (all but TTv1)."""
        return self.algorithm != "ttv1"

    @property
    def chopped(self) -> bool:
        """True when the input choppers are used."""
        return self.in_chop_prob > 0

    def replace(self, **changes: Any) -> TransferParameters:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MixedPrecisionParameters:
    """Mixed precision (aihwkit ``MixedPrecisionCompound`` fields).

    Attributes:
        transfer_every: Mini-batches between writes of chi onto the devices.
        granularity: Weight change of one pulse, epsilon (0: the device's dw_min).
        transfer_lr: Scale of chi when converted to pulses.
    """

    name: ClassVar[str] = "mp"

    transfer_every: int = 1
    granularity: float = 0.0
    transfer_lr: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.transfer_every, int) or self.transfer_every < 1:
            raise ValueError(
                f"algorithm.transfer_every = {self.transfer_every!r} is not allowed: expected an "
                "integer >= 1."
            )
        _positive("algorithm", "granularity", self.granularity, allow_zero=True)
        _positive("algorithm", "transfer_lr", self.transfer_lr)

    def replace(self, **changes: Any) -> MixedPrecisionParameters:
        return dataclasses.replace(self, **changes)


#: Any algorithm configuration.
Algorithm = AnalogSGD | TransferParameters | MixedPrecisionParameters


def ttv1(**changes: Any) -> TransferParameters:
    """Tiki-Taka v1 as aihwkit's ``build_config("ttv1")``: transfer every mini-batch."""
    base = TransferParameters(
        algorithm="ttv1", units_in_mbatch=True, transfer_update=PulseTrainParameters()
    )
    return base.replace(**changes)


def ttv2(**changes: Any) -> TransferParameters:
    """TTv2 as aihwkit's ``build_config("ttv2")`` (no choppers, fixed fast lr)."""
    return TransferParameters(algorithm="ttv2").replace(**changes)


def c_ttv2(**changes: Any) -> TransferParameters:
    """Chopped TTv2 as aihwkit's ``build_config("c-ttv2")``."""
    base = TransferParameters(algorithm="c-ttv2", in_chop_prob=0.1, fast_lr=0.1, auto_scale=True)
    return base.replace(**changes)


def agad(**changes: Any) -> TransferParameters:
    """AGAD as aihwkit's ``build_config("agad")`` (regular choppers, computed reference)."""
    base = TransferParameters(
        algorithm="agad",
        in_chop_prob=0.1,
        fast_lr=0.1,
        auto_scale=True,
        transfer_forward=IOParameters(),
        transfer_update=PulseTrainParameters(desired_bl=1),
    )
    return base.replace(**changes)


def mixed_precision(**changes: Any) -> MixedPrecisionParameters:
    """Mixed precision as aihwkit's ``build_config("mp")``."""
    return MixedPrecisionParameters().replace(**changes)
