"""Analog multi-head attention: the projections on crossbars, the attention arithmetic digital.

:class:`AnalogMultiheadAttention` replaces ``torch.nn.MultiheadAttention``. Its four weight
matrices are analog layers (:class:`~analoglib.nn.linear.AnalogLinear`): the input projection
(one packed ``(3 E, E)`` matrix, or separate query, key and value matrices when ``kdim`` or
``vdim`` differ from ``embed_dim``) and the output projection. Everything between them has no
fixed weights and stays digital: the split into heads, the scaled dot products, the masks, the
softmax, the dropout on the attention weights and the optional learned key/value biases.

The forward follows ``torch.nn.MultiheadAttention`` (same arguments, options, shapes and mask
conventions), so the layer drops into ``nn.TransformerEncoderLayer``,
``nn.TransformerDecoderLayer``, ``nn.TransformerEncoder`` and ``nn.Transformer``. Those
modules have fused inference paths that read ``self_attn.in_proj_weight`` and
``self_attn.in_proj_bias`` directly instead of calling the layer; here both are ``None``, which
makes every such path fall back to calling the layer (see
:func:`~analoglib.nn.convert.convert_to_analog`, which also switches the paths off for layers
whose feed-forward part is analog).

References:
    ``docs/model.md#standard-model`` (the analog layers), ``docs/aihwkit.md#conversion-api``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.nn.linear import AnalogLinear
from analoglib.presets import standard_hwa_2023

__all__ = ["AnalogMultiheadAttention"]


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """A digital ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias``."""
    module = nn.Linear(
        weight.shape[1],
        weight.shape[0],
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module


def _additive_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (``True`` = masked) as an additive float mask; float masks as they are.

    Raises:
        ValueError: If ``mask`` is neither boolean nor floating point.
    """
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return additive.masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise ValueError(
            f"{name} of dtype {mask.dtype} is not allowed: expected a boolean mask (True = "
            "masked) or a floating-point mask (added to the attention scores)."
        )
    return mask.to(dtype)


class AnalogMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with its projections on simulated PCM crossbars.

    Built from a digital layer with :meth:`from_digital` (what
    :func:`~analoglib.nn.convert.convert_to_analog` does), or directly with the arguments of
    ``nn.MultiheadAttention`` (random initial weights as torch's). The projection biases are
    digital, as in every analog layer; so are ``bias_k`` and ``bias_v``.

    Args:
        embed_dim: Model width ``E`` (query and output features).
        num_heads: Number of heads; must divide ``embed_dim``.
        dropout: Dropout probability on the attention weights (training only), in ``[0, 1]``.
        bias: Biases of the input and output projections.
        add_bias_kv: Append a learned key and value (digital) to every source sequence.
        add_zero_attn: Append a zero key and value to every source sequence.
        kdim: Key features (default ``embed_dim``).
        vdim: Value features (default ``embed_dim``).
        batch_first: Batched inputs and outputs are ``(batch, seq, feature)`` instead of
            ``(seq, batch, feature)``.
        config: Crossbar configuration; defaults to :func:`~analoglib.presets.standard_hwa_2023`.
        device: Device of the parameters.
        dtype: Floating-point type of the parameters.

    Attributes:
        in_proj: Packed ``(3 E, E)`` input projection (:class:`AnalogLinear`, ``E -> 3 E``) when
            ``kdim == vdim == embed_dim``, else ``None``.
        q_proj: Query projection ``E -> E`` when the key or value width differs, else ``None``.
        k_proj: Key projection ``kdim -> E`` when the key or value width differs, else ``None``.
        v_proj: Value projection ``vdim -> E`` when the key or value width differs, else ``None``.
        out_proj: Output projection ``E -> E``.

    Shape:
        As ``nn.MultiheadAttention``: query ``(N, L, E)`` (``batch_first``), ``(L, N, E)`` or
        unbatched ``(L, E)``; key ``(.., S, kdim)``, value ``(.., S, vdim)`` alike; output like
        the query; attention weights ``(N, L, S')`` averaged over heads or ``(N, H, L, S')``
        per head, ``S'`` counting the appended key positions.

    Raises:
        ValueError: If ``embed_dim``, ``num_heads``, ``kdim`` or ``vdim`` is not a positive
            integer, ``num_heads`` does not divide ``embed_dim``, or ``dropout`` is outside
            ``[0, 1]``.

    References:
        ``docs/model.md#standard-model``.
    """

    in_proj: AnalogLinear | None
    q_proj: AnalogLinear | None
    k_proj: AnalogLinear | None
    v_proj: AnalogLinear | None
    out_proj: AnalogLinear
    bias_k: nn.Parameter | None
    bias_v: nn.Parameter | None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        config: PCMConfig | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_options(embed_dim, num_heads, dropout, kdim, vdim)
        digital = nn.MultiheadAttention(
            embed_dim,
            num_heads,
            dropout=dropout,
            bias=bias,
            add_bias_kv=add_bias_kv,
            add_zero_attn=add_zero_attn,
            kdim=kdim,
            vdim=vdim,
            batch_first=batch_first,
            device=device,
            dtype=dtype,
        )
        self._build(digital, config or standard_hwa_2023())

    @classmethod
    def from_digital(
        cls, module: nn.MultiheadAttention, config: PCMConfig
    ) -> AnalogMultiheadAttention:
        """Analog copy of an ``nn.MultiheadAttention`` (the module itself is not changed).

        Args:
            module: The digital layer.
            config: Crossbar configuration, copied into each projection.

        Returns:
            The analog layer, in the training mode of ``module``.

        Raises:
            ValueError: If ``module`` is not an ``nn.MultiheadAttention``.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise ValueError(
                f"module = {type(module).__name__} is not allowed: expected an "
                "nn.MultiheadAttention."
            )
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._build(module, config)
        return layer

    def _build(self, module: nn.MultiheadAttention, config: PCMConfig) -> None:
        """Copy the options of ``module`` and map its four matrices onto analog layers."""
        self.embed_dim = module.embed_dim
        self.kdim = module.kdim
        self.vdim = module.vdim
        self.num_heads = module.num_heads
        self.head_dim = module.head_dim
        self.dropout = float(module.dropout)
        self.batch_first = module.batch_first
        self.add_zero_attn = module.add_zero_attn
        self._qkv_same_embed_dim = module._qkv_same_embed_dim
        e = self.embed_dim
        b = module.in_proj_bias
        if self._qkv_same_embed_dim:
            assert module.in_proj_weight is not None
            self.in_proj = AnalogLinear.from_digital(_linear(module.in_proj_weight, b), config)
            self.q_proj = self.k_proj = self.v_proj = None
        else:
            assert module.q_proj_weight is not None
            assert module.k_proj_weight is not None and module.v_proj_weight is not None
            b_q, b_k, b_v = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
            self.in_proj = None
            self.q_proj = AnalogLinear.from_digital(_linear(module.q_proj_weight, b_q), config)
            self.k_proj = AnalogLinear.from_digital(_linear(module.k_proj_weight, b_k), config)
            self.v_proj = AnalogLinear.from_digital(_linear(module.v_proj_weight, b_v), config)
        self.out_proj = AnalogLinear.from_digital(
            _linear(module.out_proj.weight, module.out_proj.bias), config
        )
        if module.bias_k is not None and module.bias_v is not None:
            self.bias_k = nn.Parameter(module.bias_k.detach().clone())  # (1, 1, E)
            self.bias_v = nn.Parameter(module.bias_v.detach().clone())  # (1, 1, E)
        else:
            self.bias_k = self.bias_v = None
        self.train(module.training)

    # torch's fused inference paths (nn.MultiheadAttention's own, nn.TransformerEncoderLayer's,
    # nn.TransformerEncoder's nested-tensor path) read these tensors instead of calling the
    # layer and fall back to calling it when they are None.
    @property
    def in_proj_weight(self) -> None:
        """Always ``None``: the input projection is on crossbar tiles (``in_proj``)."""
        return None

    @property
    def in_proj_bias(self) -> None:
        """Always ``None``: the input-projection bias belongs to ``in_proj`` (or q/k/v)."""
        return None

    @property
    def has_bias(self) -> bool:
        """True if the projections have biases (``bias=True`` of the digital layer)."""
        return self.out_proj.bias is not None

    def to_digital(self) -> nn.MultiheadAttention:
        """Equivalent ``nn.MultiheadAttention`` with the reference (unprogrammed) weights.

        Returns:
            A digital layer with the same options, in this layer's training mode.
        """
        weight = self.out_proj.weight
        module = nn.MultiheadAttention(
            self.embed_dim,
            self.num_heads,
            dropout=self.dropout,
            bias=self.has_bias,
            add_bias_kv=self.bias_k is not None,
            add_zero_attn=self.add_zero_attn,
            kdim=self.kdim,
            vdim=self.vdim,
            batch_first=self.batch_first,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            if self.in_proj is not None:
                assert module.in_proj_weight is not None
                module.in_proj_weight.copy_(self.in_proj.digital_weight())
                projections = [self.in_proj]
            else:
                assert self.q_proj is not None and self.k_proj is not None
                assert self.v_proj is not None
                projections = [self.q_proj, self.k_proj, self.v_proj]
                for name, proj in zip(("q", "k", "v"), projections, strict=True):
                    getattr(module, f"{name}_proj_weight").copy_(proj.digital_weight())
            if module.in_proj_bias is not None:
                biases: list[Tensor] = [p.bias for p in projections if p.bias is not None]
                module.in_proj_bias.copy_(torch.cat(biases))
            module.out_proj.weight.copy_(self.out_proj.digital_weight())
            if module.out_proj.bias is not None and self.out_proj.bias is not None:
                module.out_proj.bias.copy_(self.out_proj.bias)
            if self.bias_k is not None and self.bias_v is not None:
                assert module.bias_k is not None and module.bias_v is not None
                module.bias_k.copy_(self.bias_k)
                module.bias_v.copy_(self.bias_v)
        module.train(self.training)
        return module

    # -- forward --------------------------------------------------------------------------------
    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Analog input projections of ``(N, L, E)``, ``(N, S, kdim)``, ``(N, S, vdim)``."""
        e = self.embed_dim
        if self.in_proj is None:
            assert self.q_proj is not None and self.k_proj is not None
            assert self.v_proj is not None
            return self.q_proj(query), self.k_proj(key), self.v_proj(value)
        # One analog call per distinct input tensor; the packed output is (.., 3E).
        if query is key and key is value:
            q, k, v = self.in_proj(query).split(e, dim=-1)
        elif key is value:
            q = self.in_proj(query)[..., :e]
            k, v = self.in_proj(key)[..., e:].split(e, dim=-1)
        else:
            q = self.in_proj(query)[..., :e]
            k = self.in_proj(key)[..., e : 2 * e]
            v = self.in_proj(value)[..., 2 * e :]
        return q, k, v

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"{type(self).__name__}: query, key and value have {query.dim()}, {key.dim()} "
                f"and {value.dim()} dimensions; expected all 3 (batched) or all 2 (unbatched)."
            )
        for name, x, width in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            if x.shape[-1] != width:
                raise ValueError(
                    f"{type(self).__name__}: {name} has {x.shape[-1]} features, expected {width}."
                )
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(
                f"{type(self).__name__}: key {tuple(key.shape)} and value {tuple(value.shape)} "
                "differ in sequence or batch size."
            )
        batch_dim = 0 if self.batch_first else 1
        if query.dim() == 3 and query.shape[batch_dim] != key.shape[batch_dim]:
            raise ValueError(
                f"{type(self).__name__}: query {tuple(query.shape)} and key "
                f"{tuple(key.shape)} differ in batch size (batch_first={self.batch_first})."
            )

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention of ``query`` over ``key``/``value``, as ``nn.MultiheadAttention.forward``.

        Args:
            query: Queries, ``(N, L, E)`` / ``(L, N, E)`` / ``(L, E)``.
            key: Keys, ``(N, S, kdim)`` / ``(S, N, kdim)`` / ``(S, kdim)``.
            value: Values, ``(N, S, vdim)`` / ``(S, N, vdim)`` / ``(S, vdim)``.
            key_padding_mask: ``(N, S)`` (``(S,)`` unbatched) source positions to ignore:
                boolean (``True`` = ignore) or float (added to the scores).
            need_weights: Also return the attention weights.
            attn_mask: ``(L, S)`` or ``(N * num_heads, L, S)`` mask, boolean (``True`` = not
                allowed) or float (added to the scores).
            average_attn_weights: Average the returned weights over the heads.
            is_causal: Hint that ``attn_mask`` is the causal mask (it must be given). As in
                torch, without ``key_padding_mask`` and with ``need_weights=False`` a causal
                (lower-triangular) mask over the extended source replaces ``attn_mask``.

        Returns:
            ``(output, weights)``: the output like ``query`` (``embed_dim`` features), and the
            attention weights (``None`` unless ``need_weights``).

        Raises:
            ValueError: On inconsistent shapes, a mask of another dtype than bool or float, or
                ``is_causal`` without ``attn_mask``.
        """
        self._check_inputs(query, key, value)
        batched = query.dim() == 3
        if is_causal and attn_mask is None:
            raise ValueError(
                "is_causal = True is not allowed without attn_mask: it is a hint that attn_mask "
                "is the causal mask (nn.Transformer.generate_square_subsequent_mask makes one)."
            )
        # Projections first (on the caller's tensors: shared inputs are projected once), then
        # the internal layout is batch first: (N, L, E).
        q, k, v = self._project(query, key, value)
        if not batched:
            q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        n, tgt_len, e = q.shape
        src_len = k.shape[1]
        h, d = self.num_heads, self.head_dim

        padding = _additive_mask(key_padding_mask, "key_padding_mask", q.dtype)  # (N, S)
        if padding is not None and tuple(padding.shape) != (n, src_len):
            raise ValueError(
                f"key_padding_mask of shape {tuple(padding.shape)} is not allowed: expected "
                f"({n}, {src_len}) (({src_len},) for unbatched inputs)."
            )
        causal_only = is_causal and padding is None and not need_weights
        mask = None if causal_only else _additive_mask(attn_mask, "attn_mask", q.dtype)
        if mask is not None:
            if tuple(mask.shape) == (tgt_len, src_len):
                mask = mask.unsqueeze(0)  # (1, L, S)
            elif tuple(mask.shape) != (n * h, tgt_len, src_len):
                raise ValueError(
                    f"attn_mask of shape {tuple(mask.shape)} is not allowed: expected "
                    f"({tgt_len}, {src_len}) or ({n * h}, {tgt_len}, {src_len}) (batch * heads)."
                )
        # Appended source positions: the learned bias key/value, then the zero key/value.
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(n, 1, e)], dim=1)  # (N, S + 1, E)
            v = torch.cat([v, self.bias_v.expand(n, 1, e)], dim=1)
            mask = F.pad(mask, (0, 1)) if mask is not None else None
            padding = F.pad(padding, (0, 1)) if padding is not None else None
        # Heads: (N, S, E) -> (N * H, S, d), batch-major as torch's (N * H, L, S) masks.
        q = q.reshape(n, tgt_len, h, d).transpose(1, 2).reshape(n * h, tgt_len, d)
        k = k.reshape(n, -1, h, d).transpose(1, 2).reshape(n * h, -1, d)
        v = v.reshape(n, -1, h, d).transpose(1, 2).reshape(n * h, -1, d)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(n * h, 1, d)], dim=1)
            v = torch.cat([v, v.new_zeros(n * h, 1, d)], dim=1)
            mask = F.pad(mask, (0, 1)) if mask is not None else None
            padding = F.pad(padding, (0, 1)) if padding is not None else None
        src_len = k.shape[1]
        if causal_only:
            # Lower-triangular over the extended source, top-left aligned: (1, L, S')
            blocked = torch.ones(tgt_len, src_len, dtype=torch.bool, device=q.device).triu(1)
            mask = q.new_zeros(1, tgt_len, src_len).masked_fill_(blocked, float("-inf"))
        if padding is not None:
            per_head = padding.view(n, 1, 1, src_len).expand(n, h, 1, src_len)
            per_head = per_head.reshape(n * h, 1, src_len)  # (N * H, 1, S')
            mask = per_head if mask is None else mask + per_head

        scores = torch.bmm(q * (1.0 / math.sqrt(d)), k.transpose(1, 2))  # (N * H, L, S')
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0.0:
            weights = F.dropout(weights, p=self.dropout, training=True)
        context = torch.bmm(weights, v)  # (N * H, L, d)
        context = context.reshape(n, h, tgt_len, d).transpose(1, 2).reshape(n, tgt_len, e)
        out = self.out_proj(context)  # (N, L, E), analog
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)  # (L, N, E)

        if not need_weights:
            return out, None
        attn = weights.reshape(n, h, tgt_len, src_len)
        if average_attn_weights:
            attn = attn.mean(dim=1)  # (N, L, S')
        return out, (attn.squeeze(0) if not batched else attn)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, "
            f"vdim={self.vdim}, dropout={self.dropout}, bias={self.has_bias}, "
            f"add_bias_kv={self.bias_k is not None}, add_zero_attn={self.add_zero_attn}, "
            f"batch_first={self.batch_first}"
        )


def _check_options(
    embed_dim: int, num_heads: int, dropout: float, kdim: int | None, vdim: int | None
) -> None:
    """Validate the constructor options (torch asserts some of them, we name them)."""
    for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 1.")
    for name, width in (("kdim", kdim), ("vdim", vdim)):
        if width is not None and (
            not isinstance(width, int) or isinstance(width, bool) or width < 1
        ):
            raise ValueError(
                f"{name} = {width!r} is not allowed: expected None or an integer >= 1."
            )
    if embed_dim % num_heads:
        raise ValueError(
            f"num_heads = {num_heads} is not allowed: it must divide embed_dim = {embed_dim}."
        )
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout = {dropout!r} is not allowed: expected a value in [0, 1].")
