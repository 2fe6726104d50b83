"""Analog multi-head attention: ``ideal()`` equals ``nn.MultiheadAttention`` for every option.

The projections are analog, the attention arithmetic digital; inside torch's transformer
modules the fused inference paths (which read weights instead of calling layers) must never
run on a converted model. ``docs/aihwkit.md#feature-comparison`` (all noise off => analog model
equals digital model).
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import analoglib
from analoglib.nn import AnalogLinear, AnalogMultiheadAttention
from analoglib.presets import ideal, standard_hwa_2023

E, H = 16, 4  # embed_dim, heads
N, L, S = 3, 5, 6  # batch, target and source lengths
KDIM, VDIM = 12, 10


def close(a: Tensor, b: Tensor, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(
        a.detach().double().numpy(), b.detach().double().numpy(), rtol=1e-5, atol=atol
    )


def _digital(
    batch_first: bool, separate: bool, bias: bool, add_bias_kv: bool, add_zero_attn: bool
) -> nn.MultiheadAttention:
    torch.manual_seed(int(batch_first) + 2 * separate + 4 * bias + 8 * add_bias_kv)
    module = nn.MultiheadAttention(
        E,
        H,
        bias=bias,
        add_bias_kv=add_bias_kv,
        add_zero_attn=add_zero_attn,
        kdim=KDIM if separate else None,
        vdim=VDIM if separate else None,
        batch_first=batch_first,
    )
    if bias:  # torch starts the biases at zero; make them matter
        with torch.no_grad():
            assert module.in_proj_bias is not None and module.out_proj.bias is not None
            module.in_proj_bias.normal_()
            module.out_proj.bias.normal_()
    return module.eval()


def _masks(kind: str, padding: str) -> tuple[Tensor | None, Tensor | None, bool]:
    """(attn_mask, key_padding_mask, mask_is_causal) for a mask kind and a padding kind."""
    attn_mask: Tensor | None = None
    causal = torch.ones(L, S, dtype=torch.bool).triu(1)  # True = not allowed
    if kind == "bool":
        attn_mask = causal
    elif kind == "float":
        attn_mask = torch.zeros(L, S).masked_fill(causal, float("-inf"))
    elif kind == "bool3d":  # (N * H, L, S), a different mask per batch entry and head
        attn_mask = torch.rand(N * H, L, S, generator=torch.Generator().manual_seed(3)) > 0.7
        attn_mask[..., 0] = False  # no row fully masked
    elif kind == "float3d":
        attn_mask = torch.randn(N * H, L, S, generator=torch.Generator().manual_seed(4))
    key_padding_mask: Tensor | None = None
    if padding != "none":
        key_padding_mask = torch.zeros(N, S, dtype=torch.bool)
        key_padding_mask[0, -2:] = True
        key_padding_mask[2, -1] = True
        if padding == "float":
            key_padding_mask = torch.zeros(N, S).masked_fill(key_padding_mask, float("-inf"))
    return attn_mask, key_padding_mask, kind in ("bool", "float")


# Every valid call: torch wants the two masks of one type (bool or float); is_causal only with
# a causal attn_mask; need_weights with and without averaging over the heads.
CALLS = [
    (kind, padding, is_causal, need_weights, average)
    for kind, padding in itertools.product(
        ["none", "bool", "float", "bool3d", "float3d"], ["none", "bool", "float"]
    )
    if "none" in (kind, padding) or kind.startswith(padding)
    for is_causal in (False, True)
    if not is_causal or kind in ("bool", "float")
    for need_weights, average in [(True, True), (True, False), (False, True)]
]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("separate", [False, True], ids=["packed", "kdim_vdim"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("add_bias_kv", [False, True])
@pytest.mark.parametrize("add_zero_attn", [False, True])
def test_ideal_attention_equals_torch_for_every_call(
    batch_first: bool, separate: bool, bias: bool, add_bias_kv: bool, add_zero_attn: bool
) -> None:
    digital = _digital(batch_first, separate, bias, add_bias_kv, add_zero_attn)
    analog = analoglib.convert_to_analog(digital, ideal())
    assert isinstance(analog, AnalogMultiheadAttention)
    assert (analog.in_proj is None) == separate
    gen = torch.Generator().manual_seed(5)
    query = torch.randn(N, L, E, generator=gen)
    key = torch.randn(N, S, KDIM if separate else E, generator=gen)
    value = torch.randn(N, S, VDIM if separate else E, generator=gen)
    if not batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    assert len(CALLS) == 45
    for kind, padding, is_causal, need_weights, average in CALLS:
        attn_mask, key_padding_mask, _ = _masks(kind, padding)
        options: dict[str, Any] = {
            "key_padding_mask": key_padding_mask,
            "need_weights": need_weights,
            "attn_mask": attn_mask,
            "average_attn_weights": average,
            "is_causal": is_causal,
        }
        where = f"attn_mask={kind}, key_padding_mask={padding}, options={options}"
        with torch.no_grad():
            expected, expected_weights = digital(query, key, value, **options)
            out, weights = analog(query, key, value, **options)
        assert out.shape == expected.shape, where
        close(out, expected)
        if need_weights:
            assert weights is not None and expected_weights is not None, where
            assert weights.shape == expected_weights.shape, where
            close(weights, expected_weights)
        else:
            assert weights is None and expected_weights is None, where


@pytest.mark.parametrize("separate", [False, True], ids=["packed", "kdim_vdim"])
def test_ideal_attention_self_cross_and_unbatched(separate: bool) -> None:
    """Self-attention (one tensor), key is value, and unbatched inputs with masks."""
    digital = _digital(True, separate, True, True, False)
    analog = analoglib.convert_to_analog(digital, ideal())
    x = torch.randn(N, L, E)
    if not separate:
        with torch.no_grad():
            for args in [(x, x, x), (x[:, :2], x, x)]:
                out, weights = analog(*args)
                ref, ref_weights = digital(*args)
                close(out, ref)
                close(weights, ref_weights)
    key = torch.randn(S, KDIM if separate else E)
    value = torch.randn(S, VDIM if separate else E)
    padding = torch.tensor([False] * (S - 1) + [True])
    mask3d = torch.rand(H, L, S) > 0.8
    mask3d[..., 0] = False
    for attn_mask in (None, mask3d):
        options = {"key_padding_mask": padding, "attn_mask": attn_mask}
        with torch.no_grad():
            out, weights = analog(x[0], key, value, average_attn_weights=False, **options)
            ref, ref_weights = digital(x[0], key, value, average_attn_weights=False, **options)
        assert out.shape == (L, E) and weights is not None and weights.shape == (H, L, S + 1)
        close(out, ref)
        close(weights, ref_weights)


def test_attention_gradients_match_torch_in_train_mode() -> None:
    digital = _digital(True, False, True, False, False).train()
    analog = analoglib.convert_to_analog(digital, ideal()).train()
    x = torch.randn(N, L, E, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, _ = analog(x, x, x)
    ref, _ = digital(x_ref, x_ref, x_ref)
    close(out, ref)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    assert x.grad is not None and x_ref.grad is not None
    close(x.grad, x_ref.grad)
    assert isinstance(analog.in_proj, AnalogLinear) and analog.in_proj.weight.grad is not None


@pytest.mark.parametrize("separate", [False, True], ids=["packed", "kdim_vdim"])
@pytest.mark.parametrize("bias", [True, False])
def test_to_digital_round_trip(separate: bool, bias: bool) -> None:
    digital = _digital(False, separate, bias, True, True)
    analog = analoglib.convert_to_analog(digital, standard_hwa_2023())
    back = analoglib.convert_to_digital(analog)
    assert type(back) is nn.MultiheadAttention
    expected = digital.state_dict()
    assert back.state_dict().keys() == expected.keys()
    for name, value in back.state_dict().items():
        close(value, expected[name], atol=1e-6)
    assert (back.batch_first, back.add_zero_attn, back.kdim) == (
        digital.batch_first,
        digital.add_zero_attn,
        digital.kdim,
    )


def test_constructor_matches_torch_options() -> None:
    layer = AnalogMultiheadAttention(
        E, H, dropout=0.1, bias=False, kdim=KDIM, vdim=VDIM, batch_first=True, config=ideal()
    )
    assert layer.in_proj is None and layer.q_proj is not None and layer.k_proj is not None
    assert (layer.k_proj.in_features, layer.k_proj.out_features) == (KDIM, E)
    assert layer.out_proj.bias is None and layer.in_proj_bias is None
    assert "kdim=12" in repr(layer)
    packed = AnalogMultiheadAttention(E, H)
    assert packed.in_proj is not None and packed.in_proj.out_features == 3 * E


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embed_dim": 10, "num_heads": 4}, "num_heads = 4"),
        ({"embed_dim": 0, "num_heads": 1}, "embed_dim = 0"),
        ({"embed_dim": 8, "num_heads": 2, "dropout": 1.5}, "dropout = 1.5"),
        ({"embed_dim": 8, "num_heads": 2, "kdim": -1}, "kdim = -1"),
    ],
)
def test_constructor_refuses_bad_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AnalogMultiheadAttention(**kwargs)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a, x: a(x, x, x, is_causal=True), "is_causal"),
        (lambda a, x: a(x, x, x, attn_mask=torch.zeros(L, L, dtype=torch.long)), "attn_mask"),
        (lambda a, x: a(x, x, x, attn_mask=torch.zeros(2, L, L)), "attn_mask of shape"),
        (
            lambda a, x: a(x, x, x, key_padding_mask=torch.zeros(N, L + 1, dtype=torch.bool)),
            "key_padding_mask of shape",
        ),
        (lambda a, x: a(x[..., :8], x, x), "query has 8 features"),
        (lambda a, x: a(x, x[:, :2], x), "key"),
        (lambda a, x: a(x[0], x, x), "dimensions"),
    ],
)
def test_bad_inputs_raise(call: Callable[[nn.Module, Tensor], Any], match: str) -> None:
    analog = AnalogMultiheadAttention(E, H, batch_first=True, config=ideal())
    with pytest.raises(ValueError, match=match):
        call(analog, torch.randn(N, L, E))


def test_noise_reaches_the_attention_output_in_eval_mode() -> None:
    """The analog projections run (noisy config changes the output) under no_grad in eval."""
    digital = _digital(True, False, True, False, False)
    analog = analoglib.convert_to_analog(digital, standard_hwa_2023()).eval()
    x = torch.randn(N, L, E)
    with torch.no_grad():
        assert not torch.allclose(analog(x, x, x)[0], digital(x, x, x)[0], atol=1e-4)


# -- inside torch's transformer modules -----------------------------------------------------------


class _Counter:
    """Counts the calls of a function; :meth:`wrap` gives the counting function."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, 0

    def wrap(self) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:  # a function: binds as a method too
            self.calls += 1
            return self.fn(*args, **kwargs)

        return counted


@pytest.fixture
def counters(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Counter]:
    """Count torch's fused transformer paths and the analog linear layers' forwards.

    Patched on the classes and on ``torch``: forward hooks would switch the fused path of
    nn.TransformerEncoderLayer off by themselves.
    """
    found = {
        "fused_layer": _Counter(torch._transformer_encoder_layer_fwd),
        "nested": _Counter(torch._nested_tensor_from_mask),
        "analog_linear": _Counter(AnalogLinear.forward),
    }
    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", found["fused_layer"].wrap())
    monkeypatch.setattr(torch, "_nested_tensor_from_mask", found["nested"].wrap())
    monkeypatch.setattr(AnalogLinear, "forward", found["analog_linear"].wrap())
    return found


def _encoder(norm_first: bool = False) -> nn.TransformerEncoder:
    torch.manual_seed(11)
    layer = nn.TransformerEncoderLayer(
        E, H, 32, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=not norm_first).eval()


def test_encoder_layer_fused_path_is_never_taken(counters: dict[str, _Counter]) -> None:
    layer = _encoder().layers[0]
    x = torch.randn(N, L, E)
    with torch.no_grad():
        expected = layer(x)
    assert counters["fused_layer"].calls == 1  # the digital layer does take the fused path
    analog = analoglib.convert_to_analog(layer, ideal(), on_unsupported="ignore").eval()
    assert isinstance(analog.self_attn, AnalogMultiheadAttention)
    assert isinstance(analog.linear1, AnalogLinear) and isinstance(analog.linear2, AnalogLinear)
    with torch.no_grad():
        close(analog(x), expected)
    assert counters["fused_layer"].calls == 1
    assert counters["analog_linear"].calls == 4  # in_proj, out_proj, linear1, linear2
    # A digital self_attn (excluded) with analog feed-forward layers: the fused path would
    # read linear1.weight (normalised) directly; it stays off.
    partly = analoglib.convert_to_analog(
        layer, ideal(), exclude=["self_attn"], on_unsupported="ignore"
    ).eval()
    assert type(partly.self_attn) is nn.MultiheadAttention
    with torch.no_grad():
        close(partly(x), expected)
    assert counters["fused_layer"].calls == 1
    # Back to digital: the fused path is allowed again.
    with torch.no_grad():
        close(analoglib.convert_to_digital(analog).eval()(x), expected)
    assert counters["fused_layer"].calls == 2


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_encoder_nested_tensor_path_is_never_taken(counters: dict[str, _Counter]) -> None:
    encoder = _encoder()
    x = torch.randn(N, L, E)
    padding = torch.zeros(N, L, dtype=torch.bool)
    padding[0, -2:] = True
    with torch.no_grad():
        expected = encoder(x, src_key_padding_mask=padding)
    assert counters["nested"].calls == 1  # the digital encoder does use nested tensors
    assert counters["fused_layer"].calls == 2  # and the fused path of both layers
    analog = analoglib.convert_to_analog(encoder, ideal(), on_unsupported="ignore").eval()
    with torch.no_grad():
        out = analog(x, src_key_padding_mask=padding)
    assert counters["nested"].calls == 1 and counters["fused_layer"].calls == 2
    assert counters["analog_linear"].calls == 2 * 4
    keep = ~padding  # the nested path leaves padded positions at zero
    close(out[keep], expected[keep])


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_ideal_transformer_encoder_equals_torch(train: bool, norm_first: bool) -> None:
    encoder = _encoder(norm_first).train(train)
    x = torch.randn(N, L, E)
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    padding = torch.zeros(N, L, dtype=torch.bool)
    padding[1, -1] = True
    analog = analoglib.convert_to_analog(encoder, ideal(), on_unsupported="ignore").train(train)
    assert sum(isinstance(m, AnalogMultiheadAttention) for m in analog.modules()) == 2
    for kwargs in [{}, {"mask": causal}, {"mask": causal, "is_causal": True}]:
        with torch.no_grad():
            close(analog(x, **kwargs), encoder(x, **kwargs))
    keep = ~padding  # in eval mode torch's nested-tensor path leaves padded positions at 0
    for pad in (padding, torch.zeros(N, L).masked_fill(padding, float("-inf"))):
        with torch.no_grad():
            out = analog(x, src_key_padding_mask=pad)
            expected = encoder(x, src_key_padding_mask=pad)
        close(out[keep], expected[keep])


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_ideal_transformer_equals_torch(train: bool, batch_first: bool) -> None:
    torch.manual_seed(12)
    with warnings.catch_warnings():  # torch's note on nested tensors with batch_first=False
        warnings.simplefilter("ignore", UserWarning)
        model = nn.Transformer(E, H, 2, 2, 32, dropout=0.0, batch_first=batch_first).train(train)
    analog = analoglib.convert_to_analog(model, ideal(), on_unsupported="ignore").train(train)
    assert not any(type(m) in (nn.Linear, nn.MultiheadAttention) for m in analog.modules())
    src, tgt = torch.randn(N, S, E), torch.randn(N, L, E)
    if not batch_first:
        src, tgt = src.transpose(0, 1), tgt.transpose(0, 1)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(L)
    src_padding = torch.zeros(N, S, dtype=torch.bool)
    src_padding[0, -1] = True
    options: list[dict[str, Any]] = [
        {},
        {"tgt_mask": tgt_mask, "tgt_is_causal": True},
        {
            "tgt_mask": tgt_mask,
            "src_key_padding_mask": src_padding,
            "memory_key_padding_mask": src_padding,
        },
    ]
    for kwargs in options:
        with torch.no_grad():
            close(analog(src, tgt, **kwargs), model(src, tgt, **kwargs))


def test_decoder_layer_and_digital_round_trip() -> None:
    torch.manual_seed(13)
    layer = nn.TransformerDecoderLayer(E, H, 32, dropout=0.0, batch_first=True).eval()
    analog = analoglib.convert_to_analog(layer, ideal(), on_unsupported="ignore").eval()
    assert isinstance(analog.multihead_attn, AnalogMultiheadAttention)
    tgt, memory = torch.randn(N, L, E), torch.randn(N, S, E)
    mask = nn.Transformer.generate_square_subsequent_mask(L)
    with torch.no_grad():
        close(analog(tgt, memory, tgt_mask=mask, tgt_is_causal=True), layer(tgt, memory, mask))
        back = analoglib.convert_to_digital(analog).eval()
        close(back(tgt, memory, tgt_mask=mask), layer(tgt, memory, tgt_mask=mask))
    assert [type(m) for m in back.modules()] == [type(m) for m in layer.modules()]


def test_converted_attention_survives_deepcopy_and_state_dict() -> None:
    encoder = _encoder()
    analog = analoglib.convert_to_analog(encoder, standard_hwa_2023(), on_unsupported="ignore")
    analoglib.program(analog, 0)
    twin = copy.deepcopy(analog)
    fresh = analoglib.convert_to_analog(encoder, standard_hwa_2023(), on_unsupported="ignore")
    fresh.load_state_dict(analog.state_dict())
    x = torch.randn(N, L, E)
    outputs = []
    for model in (analog, twin, fresh):
        analoglib.set_forward_seed(model, 1)  # same read- and output-noise streams
        with torch.no_grad():
            outputs.append(model.eval()(x))
    close(outputs[1], outputs[0])
    close(outputs[2], outputs[0])
    # The fused paths stay off in the copies.
    assert twin.layers[0].activation_relu_or_gelu == 0 and not twin.use_nested_tensor
