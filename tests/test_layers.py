"""Analog layers and conversion: ``ideal()`` equals plain PyTorch, API facts, gradients.

``docs/aihwkit.md#feature-comparison`` ("all noise off => analog model equals digital model") and
sections 6, 9, 14.3.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import analoglib
from analoglib.nn import (
    AnalogConv1d,
    AnalogConv2d,
    AnalogGRU,
    AnalogLayerBase,
    AnalogLinear,
    AnalogLSTM,
    AnalogMultiheadAttention,
)
from analoglib.presets import ideal, standard_hwa_2023

ATOL = 1e-5
RTOL = 1e-5


def close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    """|a - b| <= atol + RTOL |b| elementwise, shapes equal.

    NumPy's check: torch.testing.assert_close imports torch.distributed (~1 s per worker).
    """
    np.testing.assert_allclose(
        a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy(), rtol=RTOL, atol=atol
    )


def convert_ideal(module: nn.Module) -> nn.Module:
    return analoglib.convert_to_analog(module.eval(), ideal()).eval()


# -- Linear -------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_features", [1, 511, 512, 513, 700, 1500])
@pytest.mark.parametrize("bias", [True, False])
def test_ideal_linear_equals_torch(in_features: int, bias: bool) -> None:
    torch.manual_seed(in_features)
    linear = nn.Linear(in_features, 37, bias=bias)
    analog = convert_ideal(linear)
    assert isinstance(analog, AnalogLinear)
    for shape in [(9, in_features), (2, 5, in_features), (in_features,)]:
        x = torch.randn(shape)
        with torch.no_grad():
            y = analog(x)
            assert y.shape == linear(x).shape
            close(y, linear(x))


def test_ideal_linear_with_zero_column() -> None:
    # A column of zeros gets scale 1 (no division by zero).
    linear = nn.Linear(10, 4)
    with torch.no_grad():
        linear.weight[2].zero_()
    analog = convert_ideal(linear)
    x = torch.randn(3, 10)
    with torch.no_grad():
        close(analog(x), linear(x))


def test_ideal_linear_program_and_drift_changes_nothing() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(700, 50)
    analog = convert_ideal(linear)
    analoglib.program(analog, 1)
    analoglib.drift(analog, 3.1536e7, 2)
    x = torch.randn(8, 700)
    with torch.no_grad():
        close(analog(x), linear(x))


# -- Convolutions -------------------------------------------------------------------------------

CONV1D = [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=4, padding="same"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="same", dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="circular"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="valid", bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, groups=2, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=5, groups=4, padding=2),  # depthwise
    dict(in_channels=200, out_channels=8, kernel_size=3, padding=1),  # 600 rows -> 2 tiles
]

CONV2D = [
    dict(in_channels=3, out_channels=5, kernel_size=3),
    dict(in_channels=3, out_channels=5, kernel_size=3, stride=2, padding=1),
    dict(in_channels=3, out_channels=5, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding="same"),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same"),  # asymmetric padding
    dict(in_channels=3, out_channels=5, kernel_size=3, padding="same", dilation=2),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=2, padding_mode="circular"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="replicate"),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding="same", padding_mode="reflect"),
    dict(in_channels=3, out_channels=5, kernel_size=3, dilation=(2, 1), padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding=1, bias=False),
    dict(in_channels=6, out_channels=6, kernel_size=3, groups=6, padding=1),  # depthwise
    dict(in_channels=6, out_channels=12, kernel_size=1, groups=3),
    dict(in_channels=64, out_channels=8, kernel_size=3, padding=1),  # 576 rows -> 2 tiles
]


def _ids(configs: list[dict[str, Any]]) -> list[str]:
    return [
        "-".join(f"{k}={v}" for k, v in c.items() if k not in ("in_channels",)) for c in configs
    ]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("kwargs", CONV1D, ids=_ids(CONV1D))
def test_ideal_conv1d_equals_torch(kwargs: dict[str, Any]) -> None:
    torch.manual_seed(1)
    conv = nn.Conv1d(**kwargs)
    analog = convert_ideal(conv)
    assert isinstance(analog, AnalogConv1d)
    x = torch.randn(3, kwargs["in_channels"], 17)
    with torch.no_grad():
        y = analog(x)
        assert y.shape == conv(x).shape
        close(y, conv(x))
        close(analog(x[0]), conv(x[0]))  # unbatched input


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("kwargs", CONV2D, ids=_ids(CONV2D))
def test_ideal_conv2d_equals_torch(kwargs: dict[str, Any]) -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(**kwargs)
    analog = convert_ideal(conv)
    assert isinstance(analog, AnalogConv2d)
    x = torch.randn(2, kwargs["in_channels"], 9, 8)
    with torch.no_grad():
        y = analog(x)
        assert y.shape == conv(x).shape
        close(y, conv(x))
        close(analog(x[0]), conv(x[0]))  # unbatched input


def test_analog_conv_constructors() -> None:
    torch.manual_seed(3)
    conv = AnalogConv2d(3, 4, 3, padding=1, config=ideal()).eval()
    conv1 = AnalogConv1d(3, 4, 3, config=ideal()).eval()
    x2, x1 = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 10)
    with torch.no_grad():
        close(conv(x2), conv.to_digital()(x2))
        close(conv1(x1), conv1.to_digital()(x1))
    assert isinstance(conv.to_digital(), nn.Conv2d)
    assert isinstance(conv1.to_digital(), nn.Conv1d)


def test_conv_refuses_wrong_input_shape() -> None:
    analog = convert_ideal(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="expected input"):
        analog(torch.randn(2, 5, 8, 8))


# -- Recurrent layers ---------------------------------------------------------------------------

RNN_CASES = [
    # (num_layers, bidirectional, batch_first, with_state, bias)
    (1, False, False, False, True),
    (2, False, True, True, True),
    (2, True, False, True, True),
    (2, True, True, False, False),
    (3, True, True, True, True),
]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("case", RNN_CASES, ids=[str(c) for c in RNN_CASES])
def test_ideal_rnn_equals_torch(kind: str, case: tuple[int, bool, bool, bool, bool]) -> None:
    layers, bidirectional, batch_first, with_state, bias = case
    torch.manual_seed(4)
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    rnn = cls(
        10, 16, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
    )
    analog = convert_ideal(rnn)
    assert isinstance(analog, AnalogLSTM if kind == "lstm" else AnalogGRU)
    batch, steps, dirs = 3, 7, 2 if bidirectional else 1
    x = torch.randn(batch, steps, 10) if batch_first else torch.randn(steps, batch, 10)
    state: Any = None
    if with_state:
        h0 = torch.randn(layers * dirs, batch, 16)
        state = (h0, torch.randn(layers * dirs, batch, 16)) if kind == "lstm" else h0
    with torch.no_grad():
        out, h = analog(x, state)
        out_ref, h_ref = rnn(x, state)
    close(out, out_ref)
    if kind == "lstm":
        close(h[0], h_ref[0])
        close(h[1], h_ref[1])
    else:
        close(h, h_ref)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_ideal_rnn_unbatched_input(kind: str) -> None:
    torch.manual_seed(5)
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(6, 8, num_layers=2, bidirectional=True)
    analog = convert_ideal(rnn)
    x = torch.randn(5, 6)
    with torch.no_grad():
        out, h = analog(x)
        out_ref, h_ref = rnn(x)
    close(out, out_ref)
    if kind == "lstm":
        close(h[0], h_ref[0])
        close(h[1], h_ref[1])
    else:
        close(h, h_ref)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rnn_to_digital(kind: str) -> None:
    torch.manual_seed(6)
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(6, 8, num_layers=2, bidirectional=True)
    analog = analoglib.convert_to_analog(rnn, standard_hwa_2023())
    digital = analoglib.convert_to_digital(analog).eval()
    assert type(digital) is type(rnn)
    x = torch.randn(4, 3, 6)
    with torch.no_grad():
        close(digital(x)[0], rnn.eval()(x)[0])


def test_rnn_proj_size_is_refused() -> None:
    with pytest.raises(ValueError, match="proj_size"):
        analoglib.convert_to_analog(nn.LSTM(4, 8, proj_size=2), ideal())


# -- Hugging Face BERT --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(7)
    cfg = transformers.BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=100,
    )
    return transformers.BertModel(cfg).eval()


def test_ideal_bert_equals_torch(bert: nn.Module) -> None:
    analog = convert_ideal(copy.deepcopy(bert))
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=mask)
        out = analog(input_ids=ids, attention_mask=mask)
        close(out.last_hidden_state, ref.last_hidden_state)
        close(out.pooler_output, ref.pooler_output)
        analoglib.program(analog, 3)
        analoglib.drift(analog, 86400.0, 4)
        out = analog(input_ids=ids, attention_mask=mask)
        close(out.last_hidden_state, ref.last_hidden_state)


def test_bert_conversion_keeps_embeddings_and_layernorm_digital(bert: nn.Module) -> None:
    n_linear = sum(isinstance(m, nn.Linear) for m in bert.modules())
    assert n_linear == 2 * 6 + 1  # q, k, v, attention output, intermediate, output; pooler
    analog = analoglib.convert_to_analog(bert, standard_hwa_2023())
    assert len(analoglib.analog_layers(analog)) == n_linear
    assert not any(type(m) is nn.Linear for m in analog.modules())
    assert isinstance(analog.encoder.layer[0].attention.self.query, AnalogLinear)
    assert isinstance(analog.pooler.dense, AnalogLinear)
    assert type(analog.embeddings.word_embeddings) is nn.Embedding
    assert type(analog.embeddings.LayerNorm) is nn.LayerNorm
    assert type(analog.encoder.layer[1].output.LayerNorm) is nn.LayerNorm
    # exclude by glob keeps the pooler digital
    partly = analoglib.convert_to_analog(bert, standard_hwa_2023(), exclude=["pooler.*"])
    assert type(partly.pooler.dense) is nn.Linear
    assert len(analoglib.analog_layers(partly)) == n_linear - 1


# -- conversion API -----------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.rnn = nn.GRU(8, 8, batch_first=True)
        self.head = nn.Linear(8, 16)
        self.classifier = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (B, 8, H, W)
        seq = f.flatten(2).transpose(1, 2)  # (B, H*W, 8)
        out, _ = self.rnn(seq)
        return self.classifier(torch.relu(self.head(out[:, -1])))


def test_convert_leaves_original_untouched() -> None:
    torch.manual_seed(8)
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    types_before = [type(m) for m in net.modules()]
    analog = analoglib.convert_to_analog(net, standard_hwa_2023())
    analoglib.program(analog, 0)
    analoglib.drift(analog, 3600.0, 0)
    assert analog is not net
    assert [type(m) for m in net.modules()] == types_before
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(analog.head, AnalogLinear) and type(net.head) is nn.Linear


def test_convert_to_digital_gives_plain_modules_with_ideal_outputs() -> None:
    torch.manual_seed(9)
    net = Net().eval()
    x = torch.randn(2, 3, 5, 5)
    analog = analoglib.convert_to_analog(net, ideal()).eval()
    digital = analoglib.convert_to_digital(analog).eval()
    assert not any(isinstance(m, AnalogLayerBase) for m in digital.modules())
    assert [type(m) for m in digital.modules()] == [type(m) for m in net.modules()]
    assert analoglib.analog_layers(analog)  # the analog model is not modified
    with torch.no_grad():
        close(digital(x), analog(x))
        close(digital(x), net(x))
    # From a noisy model too: the digital weights are the reference weights times the scales.
    noisy = analoglib.convert_to_analog(net, standard_hwa_2023())
    with torch.no_grad():
        close(analoglib.convert_to_digital(noisy).eval()(x), net(x))


@pytest.mark.parametrize(
    ("exclude", "digital_names"),
    [
        (["classifier"], {"classifier"}),
        (["features.*"], {"features.0", "features.2"}),
        (["*.2"], {"features.2"}),
        ([nn.Conv2d], {"features.0", "features.2"}),
        ([nn.GRU, "head"], {"rnn", "head"}),
    ],
)
def test_exclude_keeps_layers_digital(exclude: list[Any], digital_names: set[str]) -> None:
    net = Net()
    analog = analoglib.convert_to_analog(net, standard_hwa_2023(), exclude=exclude)
    modules = dict(analog.named_modules())
    for name in ("features.0", "features.2", "rnn", "head", "classifier"):
        is_analog = isinstance(modules[name], (AnalogLayerBase, AnalogGRU))
        assert is_analog == (name not in digital_names), name


@pytest.mark.parametrize("pattern", ["clasifier", "features.9", "*.weight"])
def test_exclude_pattern_matching_nothing_raises(pattern: str) -> None:
    with pytest.raises(ValueError, match="matches no module"):
        analoglib.convert_to_analog(Net(), standard_hwa_2023(), exclude=[pattern])


def test_exclude_entry_of_wrong_kind_raises() -> None:
    with pytest.raises(ValueError, match="exclude"):
        analoglib.convert_to_analog(Net(), standard_hwa_2023(), exclude=[3])  # type: ignore[list-item]


def test_convert_refuses_non_config() -> None:
    with pytest.raises(ValueError, match="PCMConfig"):
        analoglib.convert_to_analog(Net(), {"forward": {}})  # type: ignore[arg-type]


def test_unsupported_layer_warns_and_stays_digital() -> None:
    model = nn.Sequential(nn.Conv3d(2, 2, 1), nn.Linear(5, 3))
    with pytest.warns(UserWarning, match=r"0 \(Conv3d\)"):
        analog = analoglib.convert_to_analog(model, standard_hwa_2023())
    assert type(analog[0]) is nn.Conv3d
    assert isinstance(analog[1], AnalogLinear)


def test_multihead_attention_becomes_analog() -> None:
    """nn.MultiheadAttention is converted as a whole (its projections analog).

    tests/test_attention.py checks every option.
    """
    torch.manual_seed(15)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(16, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.proj(x)
            return self.attn(h, h, h, need_weights=False)[0]

    model = Block().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analog = analoglib.convert_to_analog(model, ideal()).eval()
    assert isinstance(analog.attn, AnalogMultiheadAttention)
    assert isinstance(analog.attn.out_proj, AnalogLinear)
    assert isinstance(analog.proj, AnalogLinear)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        close(analog(x), model(x))


def test_transformer_encoder_layer_is_converted_through_its_children() -> None:
    """Its eval fast path (which reads linear1/linear2.weight directly) is switched off."""
    torch.manual_seed(16)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its LayerNorms alone do not warn
        analog = analoglib.convert_to_analog(layer, ideal()).eval()
    assert isinstance(analog.linear1, AnalogLinear)
    assert isinstance(analog.self_attn, AnalogMultiheadAttention)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        close(analog(x), layer(x))


def test_supported_layers_convert_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analoglib.convert_to_analog(Net(), standard_hwa_2023())


def test_analog_layer_names() -> None:
    analog = analoglib.convert_to_analog(Net(), standard_hwa_2023())
    names = [name for name, _ in analoglib.named_analog_layers(analog)]
    assert names == [
        "features.0",
        "features.2",
        "rnn.cells.ih_l0",
        "rnn.cells.hh_l0",
        "head",
        "classifier",
    ]


# -- input validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", ["linear", "conv2d", "lstm"])
def test_non_finite_input_raises(bad: float, kind: str) -> None:
    if kind == "linear":
        layer, x = nn.Linear(6, 3), torch.randn(2, 6)
    elif kind == "conv2d":
        layer, x = nn.Conv2d(2, 3, 3), torch.randn(1, 2, 5, 5)
    else:
        layer, x = nn.LSTM(6, 4), torch.randn(3, 2, 6)
    analog = analoglib.convert_to_analog(layer, standard_hwa_2023()).eval()
    x.view(-1)[3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        analog(x)


def test_linear_refuses_wrong_feature_count() -> None:
    analog = analoglib.convert_to_analog(nn.Linear(6, 3), ideal())
    with pytest.raises(ValueError, match="6"):
        analog(torch.randn(2, 5))


# -- training mode: gradients and HWA modifier --------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_gradients_flow_in_train_mode(kind: str) -> None:
    torch.manual_seed(10)
    if kind == "linear":
        layer, x = nn.Linear(600, 20), torch.randn(16, 600)
    else:
        layer, x = nn.Conv2d(4, 6, 3, padding=1), torch.randn(4, 4, 8, 8)
    analog = analoglib.convert_to_analog(layer, standard_hwa_2023()).train()
    x.requires_grad_()
    y = analog(x)
    (y * torch.randn_like(y)).sum().backward()
    for name in ("weight", "input_range", "out_scales", "bias"):
        grad = getattr(analog, name).grad
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kind", ["lstm", "gru", "shared_linear"])
def test_gradients_flow_through_reused_layers_in_train_mode(kind: str) -> None:
    """Backward works when a layer runs several times per forward during input-range init.

    Recurrent cells and shared layers are called several times per forward while their input
    range is still being initialised from data (the first init_from_data calls).
    """
    torch.manual_seed(17)
    analog: nn.Module
    if kind == "shared_linear":
        shared = AnalogLinear(8, 8, config=standard_hwa_2023())
        analog = nn.Sequential(shared, nn.Tanh(), shared)
        x = torch.randn(4, 8)
    else:
        module = (nn.LSTM if kind == "lstm" else nn.GRU)(8, 8, num_layers=2)
        analog = analoglib.convert_to_analog(module, standard_hwa_2023())
        x = torch.randn(6, 3, 8)
    analog.train()
    for _ in range(2):  # two steps, both inside the init_from_data window
        analog.zero_grad()
        out = analog(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
    layers = analoglib.analog_layers(analog)
    assert all(int(layer.input_range_batches) >= 2 for layer in layers)
    for layer in layers:
        for param in (layer.weight, layer.input_range):
            assert param.grad is not None
            assert torch.isfinite(param.grad).all()


def test_input_range_initialised_from_data_in_training() -> None:
    """First batches: r <- running mean of init_std_alpha * std(x) (``docs/model.md#periphery``)."""
    analog = analoglib.convert_to_analog(nn.Linear(50, 5), standard_hwa_2023()).train()
    g = torch.Generator().manual_seed(11)
    stds = []
    with torch.no_grad():
        for scale in (1.0, 2.0, 0.5):
            x = torch.randn(64, 50, generator=g) * scale
            stds.append(3.0 * x.std().item())
            analog(x)
    assert analog.input_range.item() == pytest.approx(sum(stds) / 3, rel=1e-5)
    analog.eval()
    before = analog.input_range.clone()
    with torch.no_grad():
        analog(torch.randn(64, 50, generator=g) * 10)
    assert torch.equal(analog.input_range, before)  # no update in evaluation


def _modifier_config(enable_during_test: bool = False) -> Any:
    config = ideal()
    config.modifier.type = "add_normal"
    config.modifier.std_dev = 0.1
    config.modifier.enable_during_test = enable_during_test
    return config


def test_weight_modifier_only_in_training() -> None:
    torch.manual_seed(12)
    linear = nn.Linear(30, 10)
    x = torch.randn(8, 30)
    analog = analoglib.convert_to_analog(linear, _modifier_config())
    analog.train()
    with torch.no_grad():
        y_train = analog(x)
        assert (y_train - linear(x)).abs().max() > 1e-2
        analog.eval()
        close(analog(x), linear(x))
    test_time = analoglib.convert_to_analog(linear, _modifier_config(enable_during_test=True))
    with torch.no_grad():
        assert (test_time.eval()(x) - linear(x)).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("kind", "pdrop", "expected_std"),
    [("add_normal", 0.0, 0.1), ("mult_normal", 0.0, 0.05), ("none", 0.3, None)],
)
def test_weight_modifier_statistics(kind: str, pdrop: float, expected_std: float | None) -> None:
    """HWA weight noise on the normalised tile weights, one draw per weight (section 9).

    Every column holds the weights (1, 0.5) (normalised as they are, scale s = 1) and reads the
    0.5 with x = (0, 1). add_normal: w += 0.1 * a * xi (a = max|W| = 1); mult_normal:
    w += w * 0.1 * a * xi (std 0.05); pdrop: the weight is 0 with probability pdrop.
    """
    n_out = 20_000
    linear = nn.Linear(2, n_out, bias=False)
    with torch.no_grad():
        linear.weight[:, 0] = 1.0
        linear.weight[:, 1] = 0.5
    config = ideal()
    config.modifier.type = kind
    config.modifier.std_dev = 0.1 if kind != "none" else 0.0
    config.modifier.pdrop = pdrop
    analog = analoglib.convert_to_analog(linear, config).train()
    analog.set_forward_seed(0)
    with torch.no_grad():
        y = analog(torch.tensor([[0.0, 1.0]]))[0].double()
    if expected_std is not None:
        # SE of the sample std: sigma / sqrt(2 n); of the mean: sigma / sqrt(n).
        assert abs(y.std().item() - expected_std) < 6 * expected_std / (2 * n_out) ** 0.5
        assert abs(y.mean().item() - 0.5) < 6 * expected_std / n_out**0.5
    else:
        dropped = (y == 0).double().mean().item()
        assert set(y.unique().tolist()) == {0.0, 0.5}
        # Binomial SE sqrt(p (1 - p) / n).
        assert abs(dropped - pdrop) < 6 * (pdrop * (1 - pdrop) / n_out) ** 0.5


def test_programmed_weights_used_in_eval_only() -> None:
    """Programming noise only: eval() reads the programmed weights, train() the reference."""
    config = ideal()
    config.noise_model.prog_noise_scale = 1.0
    torch.manual_seed(13)
    linear = nn.Linear(40, 10)
    analog = analoglib.convert_to_analog(linear, config)
    x = torch.randn(4, 40)
    analoglib.program(analog, 0)
    assert not analog.training  # program() puts the model in eval mode
    with torch.no_grad():
        assert (analog(x) - linear(x)).abs().max() > 1e-3
        analog.train()
        close(analog(x), linear(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_forward_on_cuda() -> None:
    device = torch.device("cuda")
    torch.manual_seed(14)
    net = Net()
    x = torch.randn(2, 3, 5, 5)
    ideal_model = analoglib.convert_to_analog(net, ideal()).to(device).eval()
    with torch.no_grad():
        close(ideal_model(x.to(device)).cpu(), net.eval()(x), atol=1e-4)
    analog = analoglib.convert_to_analog(net, standard_hwa_2023()).to(device)
    analoglib.program(analog, 0)
    analoglib.drift(analog, 3600.0, 1)
    analoglib.set_forward_seed(analog, 2)
    with torch.no_grad():
        y1 = analog(x.to(device))
        analoglib.set_forward_seed(analog, 2)
        y2 = analog(x.to(device))
    assert y1.device.type == "cuda"
    assert torch.isfinite(y1).all()
    assert torch.equal(y1, y2)
    analog.train()
    y = analog(x.to(device).requires_grad_())
    y.sum().backward()
    assert analog.head.weight.grad is not None
    assert torch.isfinite(analog.head.weight.grad).all()
