"""Analog LSTM and GRU layers.

The input projection ``W_ih x`` and the recurrent projection ``W_hh h`` of every layer and
direction are analog layers (:class:`~analoglib.nn.linear.AnalogLinear`); gates, cell state and
biases are digital. The input projection of a whole sequence is computed in one call; the
recurrent projection runs once per time step, as the recurrence requires.

Gate order and equations follow ``torch.nn.LSTM`` (i, f, g, o) and ``torch.nn.GRU`` (r, z, n,
with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.nn.linear import AnalogLinear

__all__ = ["AnalogGRU", "AnalogLSTM"]


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    module = module.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module


class _AnalogRNNBase(nn.Module):
    """Shared implementation of the analog LSTM and GRU."""

    _gates = 4
    _digital_type: type[nn.LSTM] | type[nn.GRU] = nn.LSTM

    def __init__(self, module: nn.RNNBase, config: PCMConfig) -> None:
        super().__init__()
        if getattr(module, "proj_size", 0):
            raise ValueError(
                f"{type(module).__name__}.proj_size = {module.proj_size} is not supported: "
                "expected 0 (no projection)."
            )
        self.input_size = module.input_size
        self.hidden_size = module.hidden_size
        self.num_layers = module.num_layers
        self.bias = module.bias
        self.batch_first = module.batch_first
        self.dropout = float(module.dropout)
        self.bidirectional = module.bidirectional
        self.cells = nn.ModuleDict()
        for layer in range(self.num_layers):
            for suffix in self._suffixes():
                name = f"l{layer}{suffix}"
                w_ih = getattr(module, f"weight_ih_{name}")
                w_hh = getattr(module, f"weight_hh_{name}")
                b_ih = getattr(module, f"bias_ih_{name}") if self.bias else None
                b_hh = getattr(module, f"bias_hh_{name}") if self.bias else None
                self.cells[f"ih_{name}"] = AnalogLinear.from_digital(_linear(w_ih, b_ih), config)
                self.cells[f"hh_{name}"] = AnalogLinear.from_digital(_linear(w_hh, b_hh), config)
        self.train(module.training)

    def _suffixes(self) -> list[str]:
        return ["", "_reverse"] if self.bidirectional else [""]

    def to_digital(self) -> nn.RNNBase:
        """Equivalent digital LSTM/GRU with the reference (unprogrammed) weights."""
        weight = self.cells["ih_l0"].weight
        module = self._digital_type(
            self.input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            dropout=self.dropout,
            bidirectional=self.bidirectional,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            for layer in range(self.num_layers):
                for suffix in self._suffixes():
                    name = f"l{layer}{suffix}"
                    for kind in ("ih", "hh"):
                        cell = self.cells[f"{kind}_{name}"]
                        assert isinstance(cell, AnalogLinear)
                        getattr(module, f"weight_{kind}_{name}").copy_(cell.digital_weight())
                        if self.bias:
                            getattr(module, f"bias_{kind}_{name}").copy_(cell.bias)
        module.train(self.training)
        return module

    def _cell(
        self, x_proj: Tensor, h: Tensor, c: Tensor | None, hh: nn.Module
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def forward(
        self, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise ValueError(
                f"{type(self).__name__}: packed sequences are not supported; pass a padded tensor."
            )
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1 if not self.batch_first else 0)
        if self.batch_first:
            x = x.transpose(0, 1)  # (time, batch, features)
        steps, batch = x.shape[0], x.shape[1]
        n_dirs = 2 if self.bidirectional else 1
        is_lstm = self._gates == 4
        shape = (self.num_layers * n_dirs, batch, self.hidden_size)
        if hx is None:
            h0 = x.new_zeros(shape)
            c0 = x.new_zeros(shape) if is_lstm else None
        elif is_lstm:
            assert isinstance(hx, tuple)
            h0, c0 = hx
            if unbatched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        else:
            assert isinstance(hx, Tensor)
            h0, c0 = (hx.unsqueeze(1) if unbatched else hx), None

        layer_input = x
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes()):
                name = f"l{layer}{suffix}"
                index = layer * n_dirs + direction
                # One analog call for the input projection of every step: (time, batch, gates*H)
                x_proj = self.cells[f"ih_{name}"](layer_input)
                h = h0[index]
                c = c0[index] if c0 is not None else None
                order = range(steps - 1, -1, -1) if direction == 1 else range(steps)
                step_outputs: list[Tensor] = [x.new_empty(0)] * steps
                for t in order:
                    h, c = self._cell(x_proj[t], h, c, self.cells[f"hh_{name}"])
                    step_outputs[t] = h
                outputs.append(torch.stack(step_outputs))
                h_n.append(h)
                if c is not None:
                    c_n.append(c)
            layer_input = torch.cat(outputs, dim=2) if n_dirs == 2 else outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)

        output = layer_input.transpose(0, 1) if self.batch_first else layer_input
        h_out = torch.stack(h_n)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_out = h_out.squeeze(1)
        if not is_lstm:
            return output, h_out
        c_out = torch.stack(c_n)
        return output, (h_out, c_out.squeeze(1) if unbatched else c_out)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, batch_first={self.batch_first}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}"
        )


class AnalogLSTM(_AnalogRNNBase):
    """``nn.LSTM`` with analog input and recurrent projections; build with :meth:`from_digital`."""

    _gates = 4
    _digital_type = nn.LSTM

    @classmethod
    def from_digital(cls, module: nn.LSTM, config: PCMConfig) -> AnalogLSTM:
        """Analog copy of an ``nn.LSTM`` (the module itself is not changed)."""
        return cls(module, config)

    def _cell(
        self, x_proj: Tensor, h: Tensor, c: Tensor | None, hh: nn.Module
    ) -> tuple[Tensor, Tensor | None]:
        assert c is not None
        gates = x_proj + hh(h)  # (batch, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class AnalogGRU(_AnalogRNNBase):
    """``nn.GRU`` with analog input and recurrent projections; build with :meth:`from_digital`."""

    _gates = 3
    _digital_type = nn.GRU

    @classmethod
    def from_digital(cls, module: nn.GRU, config: PCMConfig) -> AnalogGRU:
        """Analog copy of an ``nn.GRU`` (the module itself is not changed)."""
        return cls(module, config)

    def _cell(
        self, x_proj: Tensor, h: Tensor, c: Tensor | None, hh: nn.Module
    ) -> tuple[Tensor, Tensor | None]:
        h_proj = hh(h)  # (batch, 3H)
        x_r, x_z, x_n = x_proj.chunk(3, dim=1)
        h_r, h_z, h_n = h_proj.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h, None
