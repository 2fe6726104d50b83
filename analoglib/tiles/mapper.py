"""Mapping of a layer's weight matrices onto crossbar tiles.

A layer holds ``groups`` independent matrices of shape ``(out_per_group, in_per_group)`` (1 for
linear layers, ``groups`` for grouped convolutions). Each matrix is split along its input
dimension into ``tiles_in`` parts of equal size (they differ by at most one row), whose partial
outputs are summed digitally; optionally also along the output dimension into ``tiles_out``
parts. For computation all input tiles of a layer are stacked into one padded tensor of shape
``(groups * tiles_in, out_per_group, rows)`` so that one batched matrix product serves all of
them; padded rows hold zero weights and receive zero inputs.

References:
    ``docs/model.md#tiling`` (equal splits, digital summation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TileMapping", "split_sizes"]


def split_sizes(size: int, max_size: int) -> list[int]:
    """Sizes of the equal split of ``size`` into parts of at most ``max_size`` (0: no split).

    Args:
        size: Dimension to split, >= 1.
        max_size: Largest part, or 0 for a single part.

    Returns:
        ``ceil(size / max_size)`` sizes that differ by at most one, larger ones first.
    """
    if size < 1:
        raise ValueError(f"size = {size!r} is not allowed: expected an integer >= 1.")
    if max_size < 0:
        raise ValueError(f"max_size = {max_size!r} is not allowed: expected an integer >= 0.")
    parts = 1 if max_size == 0 else math.ceil(size / max_size)
    base, extra = divmod(size, parts)
    return [base + 1] * extra + [base] * (parts - extra)


@dataclass(frozen=True)
class TileMapping:
    """Where every weight of a layer sits on the crossbar tiles.

    Attributes:
        in_features: Inputs per group (rows of the weight matrix of one group).
        out_features: Outputs per group.
        groups: Number of independent matrices.
        max_input_size: Tile rows (0: no split).
        max_output_size: Tile columns (0: no split).
        in_sizes: Rows used in each input tile.
        out_sizes: Columns used in each output tile.
    """

    in_features: int
    out_features: int
    groups: int
    max_input_size: int
    max_output_size: int
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]

    @classmethod
    def build(
        cls,
        in_features: int,
        out_features: int,
        groups: int = 1,
        max_input_size: int = 512,
        max_output_size: int = 0,
    ) -> TileMapping:
        """Compute the mapping of ``groups`` matrices of ``out_features x in_features``."""
        for name, value in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("groups", groups),
        ):
            if value < 1:
                raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 1.")
        return cls(
            in_features=in_features,
            out_features=out_features,
            groups=groups,
            max_input_size=max_input_size,
            max_output_size=max_output_size,
            in_sizes=tuple(split_sizes(in_features, max_input_size)),
            out_sizes=tuple(split_sizes(out_features, max_output_size)),
        )

    # -- counts -----------------------------------------------------------------------------
    @property
    def tiles_in(self) -> int:
        """Input splits per group."""
        return len(self.in_sizes)

    @property
    def tiles_out(self) -> int:
        """Output splits per group."""
        return len(self.out_sizes)

    @property
    def n_stacked(self) -> int:
        """Number of stacked input tiles (``groups * tiles_in``), the batch dim of the MVM."""
        return self.groups * self.tiles_in

    @property
    def n_tiles(self) -> int:
        """Number of physical crossbar tiles."""
        return self.groups * self.tiles_in * self.tiles_out

    @property
    def rows(self) -> int:
        """Rows of the stacked tensor (the largest input tile)."""
        return self.in_sizes[0]

    @property
    def is_padded(self) -> bool:
        """True when input tiles differ in size, so the stacked layout carries zero rows."""
        return self.in_sizes[0] != self.in_sizes[-1]

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(rows, columns) of one physical crossbar tile as configured."""
        rows = self.max_input_size or self.in_sizes[0]
        cols = self.max_output_size or self.out_sizes[0]
        return rows, cols

    @property
    def utilization(self) -> float:
        """Fraction of the configured crossbar cells that hold a weight."""
        rows, cols = self.tile_shape
        used = self.groups * self.in_features * self.out_features
        return used / (self.n_tiles * rows * cols)

    # -- index helpers (cached tensors are built by the layer) ------------------------------
    def input_gather_index(self) -> Tensor:
        """Index into ``[inputs..., zero]`` that lays inputs out as ``(tiles_in, rows)``.

        Returns:
            A ``(tiles_in * rows,)`` long tensor; padded positions point at ``in_features``
            (an appended zero column).
        """
        sizes = torch.tensor(self.in_sizes, dtype=torch.long)
        starts = torch.cumsum(sizes, 0) - sizes  # (tiles_in,)
        j = torch.arange(self.rows)
        index = starts[:, None] + j[None, :]  # (tiles_in, rows)
        index = torch.where(j[None, :] < sizes[:, None], index, self.in_features)
        return index.reshape(-1)

    def row_counts(self) -> Tensor:
        """Used rows of every stacked tile, shape ``(groups * tiles_in,)``."""
        return torch.tensor(self.in_sizes * self.groups, dtype=torch.long)

    def row_mask(self) -> Tensor:
        """``(groups * tiles_in, 1, rows)`` bool mask of the rows that exist physically."""
        rows = torch.arange(self.rows)
        return (rows[None, :] < self.row_counts()[:, None]).unsqueeze(1)

    def output_tile_index(self) -> Tensor:
        """Output tile of every column of a group, shape ``(out_features,)``."""
        return torch.repeat_interleave(
            torch.arange(self.tiles_out), torch.tensor(self.out_sizes, dtype=torch.long)
        )

    def to_tiles(self, matrix: Tensor, index: Tensor | None = None) -> Tensor:
        """Lay out ``(groups, out, in)`` matrices as ``(groups * tiles_in, out, rows)``.

        Args:
            matrix: The weights of every group.
            index: :meth:`input_gather_index` on ``matrix.device`` (pass a cached copy in hot
                paths; it is only needed when the tiles are padded).
        """
        groups, out, _ = matrix.shape
        if not self.is_padded:
            # (groups, out, tiles_in, rows) -> (groups, tiles_in, out, rows)
            tiled = matrix.reshape(groups, out, self.tiles_in, self.rows).transpose(1, 2)
        else:
            padded = torch.nn.functional.pad(matrix, (0, 1))  # zero column at index in_features
            if index is None:
                index = self.input_gather_index().to(matrix.device)
            tiled = padded[..., index].reshape(groups, out, self.tiles_in, self.rows)
            tiled = tiled.transpose(1, 2)
        return tiled.reshape(self.n_stacked, out, self.rows)

    def from_tiles(self, tiled: Tensor) -> Tensor:
        """Inverse of :meth:`to_tiles`: ``(tiles, out, rows)`` -> ``(groups, out, in)``."""
        out = tiled.shape[1]
        blocks = tiled.reshape(self.groups, self.tiles_in, out, self.rows).transpose(1, 2)
        flat = blocks.reshape(self.groups, out, self.tiles_in * self.rows)
        if not self.is_padded:
            return flat
        used = self.input_gather_index().to(tiled.device) != self.in_features
        return flat[..., used]

    def column_tiles(self) -> Tensor:
        """Input tile of every input column of a group, shape ``(in_features,)``."""
        return torch.repeat_interleave(
            torch.arange(self.tiles_in), torch.tensor(self.in_sizes, dtype=torch.long)
        )

    def expand_to_weights(self, per_tile_column: Tensor) -> Tensor:
        """Broadcast a ``(tiles, out)`` quantity onto the ``(groups, out, in)`` weights."""
        values = per_tile_column.reshape(self.groups, self.tiles_in, -1)
        index = self.column_tiles().to(values.device)
        # (groups, in, out) -> (groups, out, in)
        return values[:, index, :].transpose(1, 2)
