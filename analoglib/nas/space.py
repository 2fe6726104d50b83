"""Search spaces of AnalogNAS: the ResNet-like macro space and the NAS-Bench-201 cell space.

Both spaces offer the same verbs, which is all the searches of :mod:`analoglib.nas.search`
use: ``sample`` and ``latin_hypercube`` (configurations drawn from an explicit
``numpy.random.Generator``), ``mutate`` (one named kind of mutation), ``encode``/``decode``
(fixed-length feature vectors for the surrogate) and ``key`` (a hashable identity).

The ResNet-like space (Benmeziane et al. 2023, Table I and the released code) describes a
network by 22 numbers, in this order: ``out_channel0`` (channels of the stem), ``M`` (number of
groups, "main blocks"), and per group i = 1..5 ``R_i`` (residual blocks), ``B_i`` (parallel
branches summed inside each block), ``convblock_i`` (block type) and ``widenfact_i`` (channel
divisor: group i has ``floor(c_{i-1} / widenfact_i)`` channels). Groups above ``M`` are all
zero. The network is built by :class:`analoglib.models.AnalogNASResNet`; its parameter count
has the closed form :func:`parameter_count`.

References:
    Benmeziane et al. 2023 (AnalogNAS); Dong & Yang 2020 (NAS-Bench-201); ``docs/nas.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from analoglib.models.analognas_resnet import group_channels, group_strides

__all__ = [
    "FEATURES",
    "MAX_GROUPS",
    "NB201_OPS",
    "NB201Space",
    "ResNetLikeSpace",
    "analognas_code",
    "analognas_paper",
    "cpu_small",
    "parameter_count",
]

#: Groups ("main blocks") the feature vector always describes; unused ones are zero.
MAX_GROUPS = 5
#: The 22 features of a ResNet-like configuration, in the released code's order.
FEATURES: tuple[str, ...] = (
    "out_channel0",
    "M",
    *(f"R{i}" for i in range(1, MAX_GROUPS + 1)),
    *(f"B{i}" for i in range(1, MAX_GROUPS + 1)),
    *(f"convblock{i}" for i in range(1, MAX_GROUPS + 1)),
    *(f"widenfact{i}" for i in range(1, MAX_GROUPS + 1)),
)
_GROUP_FIELDS = ("R", "B", "convblock", "widenfact")
#: Widening divisors are drawn on this grid, so that features round-trip exactly.
_WIDEN_STEP = 0.01


def _check_range(name: str, bounds: tuple[Any, Any], minimum: float) -> None:
    lo, hi = bounds
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))) or not (
        minimum <= lo <= hi
    ):
        raise ValueError(
            f"{name} = {bounds!r} is not allowed: expected (low, high) with "
            f"{minimum} <= low <= high."
        )


@dataclass(frozen=True)
class ResNetLikeSpace:
    """Ranges of the AnalogNAS ResNet-like space (all bounds inclusive).

    Attributes:
        name: Label of the preset.
        out_channels0: Allowed channel counts of the stem convolution.
        groups: (min, max) number of groups ``M``, at most :data:`MAX_GROUPS`.
        residual_blocks: (min, max) blocks per active group, >= 1.
        branches: (min, max) parallel branches per block, >= 1.
        conv_block_types: (min, max) block type index. The builder has one block type (two
            3x3 convolutions per branch), as the released code, which samples the type but
            never uses it; the feature is kept so that the surrogate sees the same 22 inputs.
        widen_divisor: (min, max) of ``widenfact_i``; group i has
            ``floor(c_{i-1} / widenfact_i)`` channels, so a divisor of 0.5 doubles them.

    Configurations are ``dict[str, int | float]`` over :data:`FEATURES`.
    """

    name: str
    out_channels0: tuple[int, ...]
    groups: tuple[int, int]
    residual_blocks: tuple[int, int]
    branches: tuple[int, int]
    conv_block_types: tuple[int, int]
    widen_divisor: tuple[float, float]

    #: Mutation kinds of :meth:`mutate`, with the paper's probabilities in the search.
    mutation_kinds: ClassVar[tuple[str, ...]] = ("width", "depth", "other")

    def __post_init__(self) -> None:
        if not self.out_channels0 or any(
            not isinstance(c, int) or isinstance(c, bool) or c < 2 for c in self.out_channels0
        ):
            raise ValueError(
                f"out_channels0 = {self.out_channels0!r} is not allowed: expected a non-empty "
                "tuple of integers >= 2."
            )
        _check_range("groups", self.groups, 1)
        if self.groups[1] > MAX_GROUPS:
            raise ValueError(
                f"groups = {self.groups!r} is not allowed: at most {MAX_GROUPS} groups."
            )
        _check_range("residual_blocks", self.residual_blocks, 1)
        _check_range("branches", self.branches, 1)
        _check_range("conv_block_types", self.conv_block_types, 1)
        _check_range("widen_divisor", self.widen_divisor, 0.05)
        if self.widen_divisor[1] > 1.0:
            raise ValueError(
                f"widen_divisor = {self.widen_divisor!r} is not allowed: divisors above 1 "
                "would shrink the channels."
            )

    @property
    def n_features(self) -> int:
        """Length of :meth:`encode`'s vectors (22)."""
        return len(FEATURES)

    # ---- drawing -------------------------------------------------------------------------
    def _widen_grid(self) -> np.ndarray:
        lo, hi = self.widen_divisor
        n = int(round((hi - lo) / _WIDEN_STEP)) + 1
        return np.round(lo + _WIDEN_STEP * np.arange(n), 2)

    def _group(self, rng: np.random.Generator) -> dict[str, float]:
        return {
            "R": int(rng.integers(self.residual_blocks[0], self.residual_blocks[1] + 1)),
            "B": int(rng.integers(self.branches[0], self.branches[1] + 1)),
            "convblock": int(rng.integers(self.conv_block_types[0], self.conv_block_types[1] + 1)),
            "widenfact": float(rng.choice(self._widen_grid())),
        }

    def _assemble(self, out_channel0: int, groups: list[dict[str, float]]) -> dict[str, Any]:
        config: dict[str, Any] = {"out_channel0": int(out_channel0), "M": len(groups)}
        for field in _GROUP_FIELDS:
            for i in range(MAX_GROUPS):
                value = groups[i][field] if i < len(groups) else 0
                config[f"{field}{i + 1}"] = float(value) if field == "widenfact" else int(value)
        return {name: config[name] for name in FEATURES}

    def _groups(self, config: dict[str, Any]) -> list[dict[str, float]]:
        return [
            {field: config[f"{field}{i + 1}"] for field in _GROUP_FIELDS}
            for i in range(int(config["M"]))
        ]

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[dict[str, Any]]:
        """``n`` configurations drawn uniformly in every range (groups above ``M`` zeroed)."""
        configs = []
        for _ in range(n):
            m = int(rng.integers(self.groups[0], self.groups[1] + 1))
            c0 = int(rng.choice(self.out_channels0))
            configs.append(self._assemble(c0, [self._group(rng) for _ in range(m)]))
        return configs

    def latin_hypercube(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        """``n`` configurations from a Latin hypercube over the features.

        Each feature's range is cut into ``n`` equal strata and every stratum is used exactly
        once (in an independent random order per feature); a value is drawn uniformly inside
        its stratum and rounded to the feature's grid. This spreads the initial population of
        the search over every range, as AnalogNAS's initialisation does.
        """
        n = int(n)
        if n < 1:
            raise ValueError(f"n = {n!r} is not allowed: expected an integer >= 1.")
        # (n, 2 + 4 * MAX_GROUPS) uniform numbers, one stratum per row in every column
        u = (
            rng.permuted(np.tile(np.arange(n), (2 + 4 * MAX_GROUPS, 1)), axis=1).T
            + rng.random((n, 2 + 4 * MAX_GROUPS))
        ) / n

        def pick(values: np.ndarray, x: float) -> Any:
            return values[min(int(x * len(values)), len(values) - 1)]

        grids = {
            "R": np.arange(self.residual_blocks[0], self.residual_blocks[1] + 1),
            "B": np.arange(self.branches[0], self.branches[1] + 1),
            "convblock": np.arange(self.conv_block_types[0], self.conv_block_types[1] + 1),
            "widenfact": self._widen_grid(),
        }
        m_values = np.arange(self.groups[0], self.groups[1] + 1)
        configs = []
        for row in u:
            m = int(pick(m_values, row[1]))
            groups = [
                {
                    field: pick(grids[field], row[2 + 4 * i + j]).item()
                    for j, field in enumerate(_GROUP_FIELDS)
                }
                for i in range(m)
            ]
            configs.append(self._assemble(int(pick(np.array(self.out_channels0), row[0])), groups))
        return configs

    def mutate(self, config: dict[str, Any], kind: str, rng: np.random.Generator) -> dict[str, Any]:
        """A copy of ``config`` with one mutation of ``kind`` applied (it always changes).

        * ``"width"``: a new stem width, or a new widening divisor of one group;
        * ``"depth"``: one group more or fewer, or one block more or fewer in one group;
        * ``"other"``: a new branch count or block type of one group.

        A kind that has nothing to change (a range of one value) returns an equal copy.
        """
        if kind not in self.mutation_kinds:
            raise ValueError(
                f"kind = {kind!r} is not allowed: expected one of {self.mutation_kinds}."
            )
        c0 = int(config["out_channel0"])
        groups = self._groups(config)
        g = int(rng.integers(len(groups)))
        if kind == "width":
            others = [c for c in self.out_channels0 if c != c0]
            widths = [w for w in self._widen_grid() if w != groups[g]["widenfact"]]
            if others and (not widths or rng.random() < 0.5):
                c0 = int(rng.choice(others))
            elif widths:
                groups[g]["widenfact"] = float(rng.choice(widths))
        elif kind == "depth":
            moves = []
            if len(groups) < self.groups[1]:
                moves.append("add_group")
            if len(groups) > self.groups[0]:
                moves.append("drop_group")
            if self.residual_blocks[0] < self.residual_blocks[1]:
                moves.append("blocks")
            if moves:
                move = moves[int(rng.integers(len(moves)))]
                if move == "add_group":
                    groups.append(self._group(rng))
                elif move == "drop_group":
                    groups.pop()
                else:
                    lo, hi = self.residual_blocks
                    r = int(groups[g]["R"])
                    step = 1 if r == lo else -1 if r == hi else int(rng.choice([-1, 1]))
                    groups[g]["R"] = r + step
        else:
            field = "B" if rng.random() < 0.5 else "convblock"
            bounds = self.branches if field == "B" else self.conv_block_types
            if bounds[0] == bounds[1]:
                field, bounds = (
                    ("convblock", self.conv_block_types)
                    if field == "B"
                    else (
                        "B",
                        self.branches,
                    )
                )
            choices = [v for v in range(bounds[0], bounds[1] + 1) if v != groups[g][field]]
            if choices:
                groups[g][field] = int(rng.choice(choices))
        return self._assemble(c0, groups)

    # ---- features --------------------------------------------------------------------------
    def encode(self, configs: list[dict[str, Any]]) -> np.ndarray:
        """Feature matrix ``(n, 22)`` in :data:`FEATURES` order."""
        return np.array([[float(c[name]) for name in FEATURES] for c in configs], dtype=float)

    def decode(self, features: np.ndarray) -> list[dict[str, Any]]:
        """Configurations from a feature matrix ``(n, 22)`` (inverse of :meth:`encode`)."""
        features = np.atleast_2d(np.asarray(features, dtype=float))
        if features.shape[1] != len(FEATURES):
            raise ValueError(
                f"features have shape {features.shape}: expected (n, {len(FEATURES)})."
            )
        return [
            {
                name: (float(v) if name.startswith("widenfact") else int(round(v)))
                for name, v in zip(FEATURES, row, strict=True)
            }
            for row in features
        ]

    def key(self, config: dict[str, Any]) -> tuple[float, ...]:
        """Hashable identity of a configuration."""
        return tuple(float(config[name]) for name in FEATURES)

    def contains(self, config: dict[str, Any]) -> bool:
        """Whether ``config`` lies inside every range (groups above ``M`` zero)."""
        m = int(config["M"])
        if config["out_channel0"] not in self.out_channels0:
            return False
        if not self.groups[0] <= m <= self.groups[1]:
            return False
        for i in range(MAX_GROUPS):
            values = [config[f"{field}{i + 1}"] for field in _GROUP_FIELDS]
            if i >= m:
                if any(v != 0 for v in values):
                    return False
                continue
            r, b, t, w = values
            if not (
                self.residual_blocks[0] <= r <= self.residual_blocks[1]
                and self.branches[0] <= b <= self.branches[1]
                and self.conv_block_types[0] <= t <= self.conv_block_types[1]
                and self.widen_divisor[0] - 1e-9 <= w <= self.widen_divisor[1] + 1e-9
            ):
                return False
        return True


def parameter_count(config: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> int:
    """Trainable parameters of :class:`~analoglib.models.AnalogNASResNet` in closed form.

    Stem: ``k^2 * C_in * c0`` (7x7, no bias) + BatchNorm ``2 c0``. Block with input ``a`` and
    output ``b`` channels and ``B`` branches: ``B * (9ab + 9b^2 + 4b)``, plus ``ab + 2b`` for the
    two-path 1x1 shortcut when the shape changes. Head: ``c_M * K + K``.
    """
    channels = group_channels(config)
    total = 49 * in_channels * channels[0] + 2 * channels[0]
    strides = group_strides(int(config["M"]))
    for i in range(int(config["M"])):
        b = channels[i + 1]
        for block in range(int(config[f"R{i + 1}"])):
            a = channels[i] if block == 0 else b
            stride = strides[i] if block == 0 else 1
            total += int(config[f"B{i + 1}"]) * (9 * a * b + 9 * b * b + 4 * b)
            if a != b or stride != 1:
                total += a * b + 2 * b
    return total + channels[-1] * num_classes + num_classes


def analognas_paper() -> ResNetLikeSpace:
    """The ranges of the AnalogNAS paper's Table I.

    1-5 groups, 1-16 blocks, 1-12 branches, 4 block types, widening factor 1-4 (as a divisor:
    0.25-1.0). The stem widths are the released code's (Table I's are not in our sources).
    """
    return ResNetLikeSpace(
        name="analognas_paper",
        out_channels0=(8, 12, 16, 32, 48, 64),
        groups=(1, 5),
        residual_blocks=(1, 16),
        branches=(1, 12),
        conv_block_types=(1, 4),
        widen_divisor=(0.25, 1.0),
    )


def analognas_code() -> ResNetLikeSpace:
    """The ranges of the released AnalogNAS code (1-4 groups, 1-15 blocks, 1-4 branches).

    The code lets groups 2-5 have 0 blocks; here an active group has at least one block and
    ``M`` counts the non-empty groups (an empty group changes nothing in the network).
    """
    return ResNetLikeSpace(
        name="analognas_code",
        out_channels0=(8, 12, 16, 32, 48, 64),
        groups=(1, 4),
        residual_blocks=(1, 15),
        branches=(1, 4),
        conv_block_types=(1, 2),
        widen_divisor=(0.5, 0.8),
    )


def cpu_small() -> ResNetLikeSpace:
    """A CPU-sized space: stems of 4-8 channels, 1-3 groups of 1-2 blocks of 1-2 branches.

    Networks of about 2 k to 350 k parameters; one takes 10-100 s to train, HWA-train and
    evaluate on 5,000 Fashion-MNIST images on two CPU cores.
    """
    return ResNetLikeSpace(
        name="cpu_small",
        out_channels0=(4, 6, 8),
        groups=(1, 3),
        residual_blocks=(1, 2),
        branches=(1, 2),
        conv_block_types=(1, 2),
        widen_divisor=(0.5, 0.8),
    )


#: Operations of a NAS-Bench-201 edge, by the index AnalogNAS-Bench uses.
NB201_OPS: tuple[str, ...] = ("skip", "none", "conv3x3", "conv1x1", "avgpool3x3")


@dataclass(frozen=True)
class NB201Space:
    """The NAS-Bench-201 cell space: 6 edges, each one of :data:`NB201_OPS` (15,625 cells).

    A configuration is a tuple of six op indices; features are the 30 one-hot indicators
    (edge-major). The only mutation kind, ``"op"``, gives one edge another operation.
    """

    n_edges: int = 6
    mutation_kinds: ClassVar[tuple[str, ...]] = ("op",)

    @property
    def n_ops(self) -> int:
        return len(NB201_OPS)

    @property
    def n_features(self) -> int:
        """Length of :meth:`encode`'s vectors (30)."""
        return self.n_edges * self.n_ops

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[tuple[int, ...]]:
        """``n`` cells with every edge's op drawn uniformly."""
        return [tuple(int(v) for v in row) for row in rng.integers(self.n_ops, size=(n, 6))]

    def latin_hypercube(self, rng: np.random.Generator, n: int) -> list[tuple[int, ...]]:
        """``n`` cells in which every op appears on every edge ``n / 5`` times (up to rounding)."""
        columns = [rng.permutation(np.arange(n) % self.n_ops) for _ in range(self.n_edges)]
        return [tuple(int(col[i]) for col in columns) for i in range(n)]

    def mutate(self, cell: tuple[int, ...], kind: str, rng: np.random.Generator) -> tuple[int, ...]:
        """A copy of ``cell`` with one edge set to another op."""
        if kind not in self.mutation_kinds:
            raise ValueError(
                f"kind = {kind!r} is not allowed: expected one of {self.mutation_kinds}."
            )
        edge = int(rng.integers(self.n_edges))
        op = int(rng.choice([o for o in range(self.n_ops) if o != cell[edge]]))
        return tuple(op if i == edge else v for i, v in enumerate(cell))

    def encode(self, cells: list[tuple[int, ...]]) -> np.ndarray:
        """One-hot features ``(n, 30)``."""
        index = np.asarray(cells, dtype=int).reshape(-1, self.n_edges)  # (n, 6)
        features = np.zeros((len(index), self.n_edges, self.n_ops))
        np.put_along_axis(features, index[:, :, None], 1.0, axis=2)
        return features.reshape(len(index), -1)

    def decode(self, features: np.ndarray) -> list[tuple[int, ...]]:
        """Cells from one-hot features (inverse of :meth:`encode`)."""
        features = np.atleast_2d(np.asarray(features))
        ops = features.reshape(len(features), self.n_edges, self.n_ops).argmax(axis=2)
        return [tuple(int(v) for v in row) for row in ops]

    def key(self, cell: tuple[int, ...]) -> tuple[int, ...]:
        """Hashable identity of a cell (the tuple itself)."""
        return tuple(int(v) for v in cell)
