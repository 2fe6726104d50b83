"""Trainable crossbar tiles: weights held as pulsed-device state, updated by pulse trains.

A :class:`TrainingTile` holds one layer's weight matrix split over crossbar tiles along its
input dimension (``TileMapping``, up to ``max_input_size`` rows per tile) in the stacked
layout ``(tiles, out, rows)``. Every array of the algorithm (C, and A for Tiki-Taka) is a
tensor of device conductances with its own device-to-device state; the digital buffers (H,
chi, choppers, running means) sit beside them. Reads go through the periphery of
:mod:`analoglib.tiles.io`, updates through the pulse trains of :mod:`analoglib.tiles.pulse`
and the device models of :mod:`analoglib.devices`. Each tile manages its own pulses (its own
bit-line length and update management from its slice of x), as separate arrays do.

The update of a mini-batch is applied in one of two ways (``aggregate``):

* ``"sample"``: the pulses of every sample one after the other, as the hardware does;
* ``"batch"``: all up and all down pulses of the batch, drawn per sample, applied in
  interleaved rounds. Identical for a constant-step device; for state-dependent steps it
  evaluates every step along one interleaved sequence instead of the samples' order (a
  second-order difference, measured in ``tests/test_training_tiles.py``).

Transfers of the Tiki-Taka family happen after the batch's update of A (aihwkit interleaves
them with the per-sample updates); the number of reads per batch is the same.

References:
    ``docs/training.md#training-tiles``, ``docs/training.md#algorithms``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from analoglib.devices.effects import decay_weights, visible_weights
from analoglib.devices.pulsed import (
    ConstantStepDevice,
    DeviceState,
    PulsedDevice,
    apply_pulse_counts,
    apply_pulses,
    mean_step,
    sample_device_state,
    weight_granularity,
)
from analoglib.tiles.algorithms import (
    ALGORITHMS,
    Algorithm,
    AnalogSGD,
    MixedPrecisionParameters,
    TransferParameters,
    agad,
    c_ttv2,
    mixed_precision,
    ttv1,
    ttv2,
)
from analoglib.tiles.io import IOParameters, io_read
from analoglib.tiles.mapper import TileMapping
from analoglib.tiles.pulse import PulseTrainParameters, pulse_counts

__all__ = [
    "AGGREGATES",
    "TrainingConfig",
    "TrainingTile",
    "build_config",
    "expected_response_update",
]

#: Supported ``aggregate`` values.
AGGREGATES = ("sample", "batch")


def _backward_io() -> IOParameters:
    # aihwkit ignores bound management in the backward pass
    return IOParameters(bound_management="none")


@dataclass(frozen=True)
class TrainingConfig:
    """Everything a trainable analog layer needs (aihwkit's RPU configs for training).

    Attributes:
        device: Device of the weight array C (and of A unless ``fast_device`` is set).
        fast_device: Device of the fast array A of transfer algorithms (``None``: ``device``).
        forward: Periphery of the forward read.
        backward: Periphery of the backward read (bound management never applies).
        update: Pulse trains of the gradient update.
        algorithm: :class:`~analoglib.tiles.algorithms.AnalogSGD`,
            :class:`~analoglib.tiles.algorithms.TransferParameters` or
            :class:`~analoglib.tiles.algorithms.MixedPrecisionParameters`.
        max_input_size: Rows per tile (0: one tile).
        weight_scaling_omega: If > 0, :meth:`TrainingTile.set_weights` maps the largest
            ``|W|`` to this conductance and keeps the factor as a digital output scale
            (aihwkit's mapping field; 0, the default, programs the weights as they are).
        aggregate: ``"batch"`` (fast, default) or ``"sample"`` (exact order), see the module
            docstring.
        closed_form: Apply each device's pulses at once (affine devices only; see
            :func:`analoglib.devices.apply_pulses_closed_form`).
    """

    device: PulsedDevice = field(default_factory=ConstantStepDevice)
    fast_device: PulsedDevice | None = None
    forward: IOParameters = field(default_factory=IOParameters)
    backward: IOParameters = field(default_factory=_backward_io)
    update: PulseTrainParameters = field(default_factory=PulseTrainParameters)
    algorithm: Algorithm = field(default_factory=AnalogSGD)
    max_input_size: int = 512
    weight_scaling_omega: float = 0.0
    aggregate: str = "batch"
    closed_form: bool = False

    def __post_init__(self) -> None:
        omega = self.weight_scaling_omega
        if not isinstance(omega, (int, float)) or isinstance(omega, bool) or omega < 0:
            raise ValueError(
                f"weight_scaling_omega = {omega!r} is not allowed: expected a number >= 0."
            )
        if not isinstance(self.device, PulsedDevice):
            raise ValueError(
                f"device = {self.device!r} is not allowed: expected a PulsedDevice config."
            )
        if self.fast_device is not None and not isinstance(self.fast_device, PulsedDevice):
            raise ValueError(
                f"fast_device = {self.fast_device!r} is not allowed: expected a PulsedDevice "
                "config or None."
            )
        if not isinstance(
            self.algorithm, (AnalogSGD, TransferParameters, MixedPrecisionParameters)
        ):
            raise ValueError(
                f"algorithm = {self.algorithm!r} is not allowed: expected AnalogSGD, "
                "TransferParameters or MixedPrecisionParameters."
            )
        if self.aggregate not in AGGREGATES:
            raise ValueError(
                f"aggregate = {self.aggregate!r} is not allowed: expected one of {AGGREGATES}."
            )
        if not isinstance(self.max_input_size, int) or self.max_input_size < 0:
            raise ValueError(
                f"max_input_size = {self.max_input_size!r} is not allowed: expected an integer "
                ">= 0."
            )

    @classmethod
    def ideal(cls, **changes: Any) -> TrainingConfig:
        """Exact digital SGD in analog form.

        An ideal constant-step device (no variation, no noise, bounds far away),
        floating-point updates and perfect reads.
        """
        base = cls(
            device=ConstantStepDevice(
                dw_min=1e-3,
                dw_min_dtod=0.0,
                dw_min_std=0.0,
                up_down=0.0,
                up_down_dtod=0.0,
                w_max=1e6,
                w_min=-1e6,
                w_max_dtod=0.0,
                w_min_dtod=0.0,
            ),
            forward=IOParameters.perfect(),
            backward=IOParameters.perfect(),
            update=PulseTrainParameters(pulse_type="none"),
        )
        return dataclasses.replace(base, **changes)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)


def build_config(algorithm: str, device: PulsedDevice, **changes: Any) -> TrainingConfig:
    """The training configuration of ``algorithm`` on ``device`` (aihwkit's ``build_config``).

    ``"sgd"`` and ``"mp"`` use the default pulse trains (BL 31); the Tiki-Taka family updates
    its fast array with BL 5, as aihwkit does.

    Args:
        algorithm: One of :data:`~analoglib.tiles.algorithms.ALGORITHMS`.
        device: The device of every array.
        changes: Further :class:`TrainingConfig` fields (e.g. ``aggregate``).

    Raises:
        ValueError: For an unknown algorithm.
    """
    makers: dict[str, Any] = {
        "sgd": AnalogSGD, "ttv1": ttv1, "ttv2": ttv2, "c-ttv2": c_ttv2, "agad": agad,
        "mp": mixed_precision,
    }  # fmt: skip
    if algorithm not in makers:
        raise ValueError(f"algorithm = {algorithm!r} is not allowed: expected one of {ALGORITHMS}.")
    bl = 5 if algorithm in ("ttv2", "c-ttv2", "agad") else 31
    update = PulseTrainParameters(desired_bl=bl)
    config = TrainingConfig(device=device, algorithm=makers[algorithm](), update=update)
    return config.replace(**changes)


def expected_response_update(
    w: Tensor, delta: Tensor, state: DeviceState, device: PulsedDevice
) -> Tensor:
    """Floating-point update (``pulse_type="none"``): ``w + delta q(w)``, clipped to the bounds.

    ``q(w)`` is the device's mean step at ``w`` in the direction of ``delta`` divided by
    ``dw_min``: the response-function update ``W + Delta F(W) - |Delta| G(W)`` with
    ``F = (q+ + q-) / 2`` and ``G = (q- - q+) / 2`` (for soft bounds:
    ``W + Delta - |Delta| W / tau``). An ideal constant-step device gives ``w + delta``.

    Args:
        w: Conductances.
        delta: Desired change ``-lr d x^T`` (same shape).
        state: Device-to-device parameters.
        device: The model.

    References:
        ``docs/devices.md#response-functions``.
    """
    step = mean_step(w, delta > 0, state, device)
    new = w + delta * (step / device.dw_min)
    return torch.minimum(torch.maximum(new, state.b_min), state.b_max)


class TrainingTile(nn.Module):
    """One layer's trainable crossbar tiles (see the module docstring).

    Args:
        in_features: Inputs of the layer (rows of the weight matrix).
        out_features: Outputs of the layer.
        config: The training configuration.
        seed: Seed of the device-to-device draws and of every stochastic draw of the tile
            (pulse trains, cycle-to-cycle noise, read noise, choppers).

    Buffers (all ``(tiles, out, rows)`` unless noted): ``c`` (weight devices), ``a`` (fast
    devices, transfer algorithms), ``h`` (transfer buffer), ``chi`` (mixed-precision
    accumulator), ``chop`` (``(tiles, rows)`` input choppers), AGAD's ``running_mean`` and
    ``reference``; the device states as ``c_state.*`` / ``a_state.*``.
    """

    c: Tensor
    a: Tensor
    h: Tensor
    chi: Tensor
    chop: Tensor
    reads: Tensor
    running_mean: Tensor
    reference: Tensor
    row_mask: Tensor
    out_scale: Tensor

    def __init__(
        self, in_features: int, out_features: int, config: TrainingConfig, seed: int = 0
    ) -> None:
        super().__init__()
        self.config = config
        self.mapping = TileMapping.build(in_features, out_features, 1, config.max_input_size, 0)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)
        shape = (self.mapping.n_stacked, out_features, self.mapping.rows)
        self._register_state("c", sample_device_state(config.device, shape, self._generator))
        self.register_buffer("c", self._initial(self.c_state), persistent=True)
        self._register_seen("c")
        self.register_buffer("row_mask", self.mapping.row_mask().float(), persistent=False)
        # digital factor between the conductances and the layer's weights (weight_scaling_omega)
        self.register_buffer("out_scale", torch.ones(()))
        algorithm = config.algorithm
        self.transfers = 0  # columns read so far (transfer algorithms)
        self.matvecs = 0  # samples seen since the last transfer (transfer algorithms, MP)
        self.batches = 0
        self.m_x = self.m_d = 0.0  # running means of max|x| and max|d| (auto_scale)
        if isinstance(algorithm, TransferParameters):
            fast = config.fast_device or config.device
            self._register_state("a", sample_device_state(fast, shape, self._generator))
            self.register_buffer("a", self._initial(self.a_state))
            self._register_seen("a")
            self.register_buffer("h", torch.zeros(shape))
            self.register_buffer("chop", torch.ones(shape[0], shape[2]))
            self.register_buffer("reads", torch.zeros(shape[2], dtype=torch.long))
            if algorithm.algorithm == "agad":
                self.register_buffer("running_mean", torch.zeros(shape))
                self.register_buffer("reference", torch.zeros(shape))
        if isinstance(algorithm, MixedPrecisionParameters):
            self.register_buffer("chi", torch.zeros(shape))

    # -- state -----------------------------------------------------------------------------
    def _device(self, prefix: str) -> PulsedDevice:
        if prefix == "a":
            return self.config.fast_device or self.config.device
        return self.config.device

    def _register_seen(self, prefix: str) -> None:
        # under write noise the reads see the hidden conductances plus noise (``<prefix>_seen``)
        if self._device(prefix).write_noise_std > 0:
            hidden = getattr(self, prefix)
            seen = visible_weights(hidden, self._device(prefix), self._generator)
            self.register_buffer(f"{prefix}_seen", seen)

    def _write(self, prefix: str, new: Tensor, every_device: bool = False) -> None:
        """Store new hidden conductances of array ``prefix`` (and redraw their write noise).

        Devices whose conductance changed draw new write noise (a pulse that left a device at
        its bound changes nothing and keeps its noise); ``every_device`` redraws all of them,
        as after decay or programming.
        """
        hidden: Tensor = getattr(self, prefix)
        device = self._device(prefix)
        if device.write_noise_std > 0:
            seen: Tensor = getattr(self, f"{prefix}_seen")
            updated = None if every_device else new != hidden
            seen.copy_(visible_weights(new, device, self.generator, updated, seen))
        hidden.copy_(new)

    def _register_state(self, prefix: str, state: DeviceState) -> None:
        for f in dataclasses.fields(state):
            value = getattr(state, f.name)
            self.register_buffer(f"{prefix}_state_{f.name}", value.expand(state.shape).clone())

    def _state(self, prefix: str) -> DeviceState:
        names = [f.name for f in dataclasses.fields(DeviceState)]
        return DeviceState(**{n: getattr(self, f"{prefix}_state_{n}") for n in names})

    @property
    def c_state(self) -> DeviceState:
        """Device-to-device parameters of the weight devices C."""
        return self._state("c")

    @property
    def a_state(self) -> DeviceState:
        """Device-to-device parameters of the fast devices A."""
        return self._state("a")

    @staticmethod
    def _initial(state: DeviceState) -> Tensor:
        # conductance that reads as 0 (the reference), within the device's bounds
        return torch.minimum(torch.maximum(state.reference.clone(), state.b_min), state.b_max)

    @property
    def generator(self) -> torch.Generator:
        """The tile's generator, on the tile's device (re-seeded if the tile moved)."""
        device = self.c.device
        if self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    @property
    def algorithm(self) -> Algorithm:
        return self.config.algorithm

    # -- weights ---------------------------------------------------------------------------
    def _read(self, prefix: str) -> Tensor:
        """Weights an array's reads see: conductance minus reference, padded rows zero."""
        seen = f"{prefix}_seen"
        values: Tensor = getattr(self, seen if hasattr(self, seen) else prefix)
        if not (prefix == "a" and self.algorithm.name == "agad"):
            values = values - getattr(self, f"{prefix}_state_reference")
        return values * self.row_mask if self.mapping.is_padded else values

    def tile_weights(self) -> Tensor:
        """``(tiles, out, rows)`` weights the forward and backward reads use (gamma A + C)."""
        weights = self._read("c")
        algorithm = self.algorithm
        if isinstance(algorithm, TransferParameters) and algorithm.gamma > 0:
            weights = weights + algorithm.gamma * self._read("a")
        return weights

    def get_weights(self) -> Tensor:
        """``(out, in)`` weight matrix as the layer computes with it (times the output scale)."""
        return self.mapping.from_tiles(self.tile_weights())[0] * self.out_scale

    @torch.no_grad()
    def set_weights(self, weight: Tensor) -> None:
        """Program ``(out, in)`` weights onto C directly; A, H and chi are reset.

        Conductances are clipped to their bounds: a device cannot hold more.
        """
        expected = (self.mapping.out_features, self.mapping.in_features)
        if tuple(weight.shape) != expected:
            raise ValueError(
                f"weight of shape {tuple(weight.shape)} is not allowed: expected {expected}."
            )
        weight = weight.to(self.c)
        omega = self.config.weight_scaling_omega
        if omega > 0:
            largest = float(weight.abs().max())
            self.out_scale.fill_(largest / omega if largest > 0 else 1.0)
        tiled = self.mapping.to_tiles(weight[None] / self.out_scale)
        state = self.c_state
        programmed = torch.minimum(torch.maximum(tiled + state.reference, state.b_min), state.b_max)
        self._write("c", programmed, every_device=True)
        if hasattr(self, "a"):
            self._write("a", self._initial(self.a_state), every_device=True)
            self.h.zero_()
        if hasattr(self, "chi"):
            self.chi.zero_()

    # -- reads -----------------------------------------------------------------------------
    def to_tiles_input(self, x: Tensor) -> Tensor:
        """``(batch, in)`` -> ``(tiles, batch, rows)`` (padded rows get 0)."""
        return self.mapping.to_tiles(x[None])

    def forward_read(self, x_tiles: Tensor) -> Tensor:
        """Forward read ``(tiles, batch, rows)`` -> summed outputs ``(batch, out)``.

        The outputs are before the output scale, which the layer applies.
        """
        z = io_read(x_tiles, self.tile_weights(), self.config.forward, generator=self.generator)
        return z.sum(dim=0)

    def backward_read(self, d: Tensor) -> Tensor:
        """Backward read of the live conductances: errors ``(batch, out)`` -> ``(batch, in)``.

        ``d`` is the error of the tile outputs, before the output scale.
        """
        weights = self.tile_weights()
        d_tiles = d[None].expand(weights.shape[0], -1, -1)  # (tiles, batch, out)
        z = io_read(
            d_tiles, weights, self.config.backward, transposed=True, generator=self.generator
        )
        return self.mapping.from_tiles(z)[0]

    # -- updates ---------------------------------------------------------------------------
    def _pulsed(
        self,
        w: Tensor,
        state: DeviceState,
        device: PulsedDevice,
        x_tiles: Tensor,
        d_tiles: Tensor,
        lr: float,
        params: PulseTrainParameters,
    ) -> Tensor:
        """``w`` after the pulsed update ``w - lr d x^T`` of every tile."""
        if params.pulse_type == "none":
            delta = -lr * torch.bmm(d_tiles.transpose(1, 2), x_tiles)  # (tiles, out, rows)
            return expected_response_update(w, delta, state, device)
        gen, closed, aggregate = self.generator, self.config.closed_form, self.config.aggregate
        # (tiles, batch, out, rows) per sample or (2, tiles, out, rows) up and down
        granularity = weight_granularity(device)  # aihwkit sizes the trains with it
        counts = pulse_counts(x_tiles, d_tiles, lr, granularity, params, gen, aggregate)
        if aggregate == "sample":
            return apply_pulse_counts(
                w, counts.transpose(0, 1), state, device, gen, "sample", closed
            )
        return apply_pulse_counts(w, counts, state, device, gen, "batch", closed)

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float) -> None:
        """Apply the update of one mini-batch.

        Args:
            x: ``(batch, in)`` inputs of the forward pass.
            d: ``(batch, out)`` errors (gradients of the loss with respect to the outputs).
            lr: The optimiser's learning rate.
        """
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr = {lr!r} is not allowed: expected a number >= 0.")
        self.batches += 1
        if lr == 0 or x.shape[0] == 0:
            return
        x_tiles = self.to_tiles_input(x.to(self.c))
        d_tiles = d.to(self.c)[None].expand(x_tiles.shape[0], -1, -1)  # (tiles, batch, out)
        algorithm = self.algorithm
        config = self.config
        if isinstance(algorithm, AnalogSGD):
            new = self._pulsed(
                self.c, self.c_state, config.device, x_tiles, d_tiles, lr, config.update
            )
            self._write("c", new)
        elif isinstance(algorithm, MixedPrecisionParameters):
            self._mixed_precision(x_tiles, d_tiles, lr, algorithm)
        else:
            self._transfer_update(x_tiles, d_tiles, lr, algorithm)
        # devices with a finite lifetime relax once per mini-batch, after the update
        for prefix in ("c", "a"):
            if hasattr(self, prefix) and self._device(prefix).lifetime > 0:
                state = self.c_state if prefix == "c" else self.a_state
                decayed = decay_weights(getattr(self, prefix), state, self._device(prefix))
                self._write(prefix, decayed, every_device=True)

    def _mixed_precision(
        self, x_tiles: Tensor, d_tiles: Tensor, lr: float, p: MixedPrecisionParameters
    ) -> None:
        self.chi.add_(torch.bmm(d_tiles.transpose(1, 2), x_tiles), alpha=-lr)
        if self.batches % p.transfer_every:
            return
        epsilon = p.granularity or weight_granularity(self.config.device)
        n = torch.trunc(self.chi * (p.transfer_lr / epsilon))
        written = apply_pulses(
            self.c,
            n.to(torch.int64),
            self.c_state,
            self.config.device,
            self.generator,
            self.config.closed_form,
        )
        self._write("c", written)
        self.chi.sub_(n * (epsilon / p.transfer_lr))

    def _fast_lr(self, x: Tensor, d: Tensor, lr: float, p: TransferParameters) -> float:
        fast_lr = p.fast_lr * (lr if p.scale_fast_lr else 1.0)
        if not p.auto_scale:
            return fast_lr
        x_max, d_max = float(x.abs().max()), float(d.abs().max())
        if self.m_x == 0.0:
            self.m_x, self.m_d = x_max, d_max
        else:
            beta = 1.0 - p.auto_momentum
            self.m_x += beta * (x_max - self.m_x)
            self.m_d += beta * (d_max - self.m_d)
        if self.m_x <= 0 or self.m_d <= 0:
            return fast_lr
        dw_min = weight_granularity(self.config.fast_device or self.config.device)
        return fast_lr * self.config.update.desired_bl * dw_min / (self.m_x * self.m_d)

    def _transfer_update(
        self, x_tiles: Tensor, d_tiles: Tensor, lr: float, p: TransferParameters
    ) -> None:
        fast = self.config.fast_device or self.config.device
        fast_lr = self._fast_lr(x_tiles, d_tiles, lr, p)
        chopped_x = x_tiles * self.chop[:, None, :] if p.chopped else x_tiles
        new = self._pulsed(
            self.a, self.a_state, fast, chopped_x, d_tiles, fast_lr, self.config.update
        )
        self._write("a", new)
        if p.units_in_mbatch:
            due = 1 if self.batches % p.transfer_every == 0 else 0
        else:
            self.matvecs += x_tiles.shape[1]
            due, self.matvecs = divmod(self.matvecs, p.transfer_every)
        reads = due * p.n_reads_per_transfer
        rows = self.mapping.rows
        transfer_lr = p.transfer_lr * (lr if p.scale_transfer_lr else 1.0)
        while reads > 0:
            # distinct columns per round, so the vectorised reads equal sequential ones
            count = min(reads, rows)
            columns = (self.transfers + torch.arange(count)) % rows
            self.transfers += count
            reads -= count
            self._transfer_columns(columns.to(self.c.device), transfer_lr, p, fast)

    def _transfer_columns(
        self, columns: Tensor, transfer_lr: float, p: TransferParameters, fast: PulsedDevice
    ) -> None:
        tiles, out, rows = self.c.shape
        one_hot = torch.zeros(tiles, len(columns), rows, device=self.c.device)
        one_hot[:, torch.arange(len(columns)), columns] = 1.0  # (tiles, m, rows)
        read = io_read(one_hot, self._read("a"), p.transfer_forward, generator=self.generator)
        read = read.transpose(1, 2)  # (tiles, out, m)
        chop = self.chop[:, columns][:, None, :]  # (tiles, 1, m)
        if p.algorithm == "ttv1":
            d = -(read * chop).transpose(1, 2)  # (tiles, m, out): C += lr_t * read
            new = self._pulsed(
                self.c, self.c_state, self.config.device, one_hot, d, transfer_lr,
                p.transfer_update,
            )  # fmt: skip
            self._write("c", new)
            self._flip_choppers(columns, p)
            return
        granularity = p.buffer_granularity * weight_granularity(fast)
        if p.auto_granularity > 0:
            granularity *= p.auto_granularity / (rows * p.transfer_every)
        if p.algorithm == "agad":
            period = max(round(1 / p.in_chop_prob), 1)
            weight = min(p.tail_weightening / period, 1.0)
            mean = self.running_mean[:, :, columns]
            self.running_mean[:, :, columns] = mean + weight * (read - mean)
            signal = read - self.reference[:, :, columns]
        else:
            signal = read
        h = self.h[:, :, columns] + (transfer_lr / granularity) * chop * signal
        limit = p.transfer_update.desired_bl
        n = torch.trunc(h).clamp(-limit, limit)
        # the write is "n" pulses of C's step, upwards for a positive buffer
        state = _columns(self.c_state, columns)
        new = self.c.clone()
        new[:, :, columns] = apply_pulses(
            self.c[:, :, columns],
            n.to(torch.int64),
            state,
            self.config.device,
            self.generator,
            self.config.closed_form,
        )
        self._write("c", new)
        written = n != 0
        if p.forget_buffer:
            h = torch.where(written, p.momentum * h, h)
        else:
            h = h - (1.0 - p.momentum) * n
        self.h[:, :, columns] = h
        self._flip_choppers(columns, p)

    def _flip_choppers(self, columns: Tensor, p: TransferParameters) -> None:
        if not p.chopped:
            return
        self.reads[columns] += 1
        if p.algorithm == "agad":
            period = max(round(1 / p.in_chop_prob), 1)
            flip = (self.reads[columns] % period == 0)[None, :].expand(self.chop.shape[0], -1)
            # a new period starts: its reference is the mean of the period that ended
            switched = flip[:, None, :].expand(-1, self.c.shape[1], -1)
            self.reference[:, :, columns] = torch.where(
                switched, self.running_mean[:, :, columns], self.reference[:, :, columns]
            )
        else:
            u = torch.rand(
                self.chop.shape[0], len(columns), generator=self.generator, device=self.c.device
            )
            flip = u < p.in_chop_prob
        self.chop[:, columns] = torch.where(flip, -self.chop[:, columns], self.chop[:, columns])

    def extra_repr(self) -> str:
        m = self.mapping
        return (
            f"in={m.in_features}, out={m.out_features}, tiles={m.n_tiles}, "
            f"algorithm={self.algorithm.name!r}, device={type(self.config.device).__name__}, "
            f"aggregate={self.config.aggregate!r}"
        )


def _columns(state: DeviceState, columns: Tensor) -> DeviceState:
    """The device parameters of the given input columns (last dim)."""
    values = {f.name: getattr(state, f.name)[..., columns] for f in dataclasses.fields(state)}
    return DeviceState(**values)
