"""Every common layer analog, and nothing digital in silence.

Coverage is the analog fraction of the weight-matrix elements
(:func:`analoglib.summary.analog_fraction`: parameters named ``*weight*`` with two or more
dimensions). Embedding tables are lookup tables and stay digital by design; with the small
vocabularies of these configs (100 words) and their position tables they alone hold ~10 % of
BERT's or GPT-2's weight matrices (and ~22-25 % in BERT-base / GPT-2 small), so the >= 95 %
coverage statement is over the weight matrices excluding embeddings; the fraction with
embeddings is checked against an independent count. All models are built from configs (no
download).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import analoglib
from analoglib.models.lstm_lm import LSTMLanguageModel
from analoglib.nn import (
    AnalogHFConv1D,
    AnalogLinear,
    AnalogMultiheadAttention,
    DigitalModulesWarning,
    UnsupportedModuleError,
)
from analoglib.presets import ideal, standard_hwa_2023
from analoglib.summary import analog_fraction, digital_modules, summary

transformers = pytest.importorskip("transformers")

SMALL_BERT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "vocab_size": 100,
    "max_position_embeddings": 64,
}


def _gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=100,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(21)
    return transformers.GPT2LMHeadModel(config).eval()


def _bert() -> nn.Module:
    torch.manual_seed(22)
    return transformers.BertModel(transformers.BertConfig(**SMALL_BERT)).eval()


def _encoder() -> nn.Module:
    torch.manual_seed(23)
    layer = nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2).eval()


def _convert(model: nn.Module, **kwargs: Any) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DigitalModulesWarning)
        return analoglib.convert_to_analog(model, ideal(), **kwargs).eval()


def _weight_matrices(model: nn.Module) -> tuple[int, int]:
    """(all, embedding) weight-matrix elements of a digital model, counted independently."""
    total = embedding = 0
    for module in model.modules():
        own = [
            p for n, p in module.named_parameters(recurse=False) if "weight" in n and p.dim() >= 2
        ]
        total += sum(p.numel() for p in own)
        if isinstance(module, nn.Embedding):
            embedding += sum(p.numel() for p in own)
    return total, embedding


# -- GPT-2: transformers' Conv1D ------------------------------------------------------------------


def test_ideal_gpt2_equals_torch_and_conv1d_is_transposed() -> None:
    model = _gpt2()
    analog = _convert(model)
    conv1d = transformers.pytorch_utils.Conv1D
    assert not any(isinstance(m, conv1d) for m in analog.modules())
    block = analog.transformer.h[0]
    assert isinstance(block.attn.c_attn, AnalogHFConv1D)
    assert (block.attn.c_attn.in_features, block.attn.c_attn.out_features) == (64, 192)
    assert isinstance(analog.lm_head, AnalogLinear)
    tokens = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(tokens).logits
        logits = analog(tokens).logits
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    # Back to digital: Conv1D again, with the original (in, out) weights.
    back = analoglib.convert_to_digital(analog)
    c_attn = back.transformer.h[0].attn.c_attn
    assert type(c_attn) is conv1d
    np.testing.assert_allclose(
        c_attn.weight.detach().numpy(),
        model.transformer.h[0].attn.c_attn.weight.detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_conv1d_layer_alone_equals_torch() -> None:
    torch.manual_seed(24)
    layer = transformers.pytorch_utils.Conv1D(7, 600)  # nf=7 outputs, nx=600 inputs (2 tiles)
    with torch.no_grad():
        layer.bias.normal_()
    analog = analoglib.convert_to_analog(layer, ideal())
    assert isinstance(analog, AnalogHFConv1D)
    x = torch.randn(3, 4, 600)
    with torch.no_grad():
        np.testing.assert_allclose(analog(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-5)


def test_importing_analoglib_does_not_import_transformers() -> None:
    code = "import sys, analoglib, analoglib.nn; sys.exit('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or "analoglib imported transformers"


# -- coverage -------------------------------------------------------------------------------------

MODELS: dict[str, Callable[[], nn.Module]] = {
    "bert": _bert,
    "gpt2": _gpt2,
    "transformer_encoder": _encoder,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_coverage_of_weight_matrices(name: str) -> None:
    """>= 95 % of the weight-matrix elements other than embeddings are analog.

    Measured: 100 % for all three (embeddings and layer norms are all that stays digital).
    """
    model = MODELS[name]()
    analog = _convert(model)
    assert analog_fraction(analog, include_embeddings=False) >= 0.95
    table = digital_modules(analog)
    assert set(table["category"]) <= {"embedding", "normalisation"}, table
    # With embeddings, the fraction is the independent count of the digital model's matrices
    # (GPT-2's lm_head shares the word-embedding tensor: counted once per module here, and
    # after conversion it is an analog copy).
    total, embedding = _weight_matrices(model)
    expected = (total - embedding) / total
    assert analog_fraction(analog) == pytest.approx(expected)
    assert summary(analog)["analog_fraction"].iloc[-1] == pytest.approx(expected)
    if name == "transformer_encoder":
        assert analog_fraction(analog) == 1.0
        assert sum(isinstance(m, AnalogMultiheadAttention) for m in analog.modules()) == 2


def test_coverage_of_other_models_with_embeddings() -> None:
    """A wider BERT, a CNN with a depthwise convolution and the LSTM LM."""
    torch.manual_seed(25)
    wide = {**SMALL_BERT, "hidden_size": 128, "num_hidden_layers": 4, "intermediate_size": 512}
    wide["max_position_embeddings"] = 32
    cnn = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise
        nn.Conv2d(16, 32, 1),
        nn.Flatten(),
        nn.Linear(32 * 4, 10),
    )
    cases = [
        (transformers.BertModel(transformers.BertConfig(**wide)), 0.95),
        (cnn, 1.0),
        (LSTMLanguageModel(100, 64, 64, 2), 0.9),
    ]
    for model, floor in cases:
        analog = _convert(model.eval())
        assert analog_fraction(analog) >= floor, type(model).__name__
        assert analog_fraction(analog, include_embeddings=False) == 1.0


# -- the warning and on_unsupported ---------------------------------------------------------------


class _Custom(nn.Module):
    """A layer with a weight matrix of its own and no analog counterpart."""

    def __init__(self) -> None:
        super().__init__()
        self.mix_weight = nn.Parameter(torch.randn(8, 8))
        self.inner = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x @ self.mix_weight)


def _mixed() -> nn.Module:
    return nn.Sequential(
        nn.Embedding(10, 8),
        nn.LayerNorm(8),
        _Custom(),
        nn.Linear(8, 8),
        nn.Bilinear(8, 8, 4),
    )


def test_warning_lists_every_digital_module_once() -> None:
    with pytest.warns(DigitalModulesWarning) as record:
        analog = analoglib.convert_to_analog(_mixed(), standard_hwa_2023(), exclude=["3"])
    assert len(record) == 1
    message = str(record[0].message)
    for expected in (
        "[no analog counterpart] 2 (_Custom), 4 (Bilinear)",
        "[excluded] 3 (Linear, excluded by name pattern '3')",
        "[embeddings, digital by design] 0 (Embedding)",
        "[normalisation, digital by design] 1 LayerNorm",
    ):
        assert expected in message
    assert "2.inner" not in message  # converted: the child of an unsupported module
    assert isinstance(analog[2].inner, AnalogLinear)
    table = digital_modules(analog)
    assert list(table["module"]) == ["0", "1", "2", "3", "4"]
    assert list(table["category"]) == [
        "embedding",
        "normalisation",
        "unsupported",
        "excluded",
        "unsupported",
    ]
    assert list(table["weight_elements"]) == [80, 0, 64, 64, 256]
    assert analog_fraction(analog) == pytest.approx(64 / (64 + 80 + 64 + 64 + 256))
    assert analog_fraction(analog, include_embeddings=False) == pytest.approx(64 / (64 * 3 + 256))


def test_excluding_a_container_keeps_its_children_digital() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    with pytest.warns(DigitalModulesWarning, match=r"0\.0 \(Linear, excluded by name pattern '0'"):
        analog = analoglib.convert_to_analog(model, standard_hwa_2023(), exclude=["0"])
    assert type(analog[0][0]) is nn.Linear and isinstance(analog[1], AnalogLinear)


def test_on_unsupported_error_raises_and_names_the_modules() -> None:
    with pytest.raises(UnsupportedModuleError, match=r"2 \(_Custom\), 4 \(Bilinear\)"):
        analoglib.convert_to_analog(_mixed(), standard_hwa_2023(), on_unsupported="error")
    # Embeddings, norms and exclusions are not errors (they are still listed).
    model = nn.Sequential(nn.Embedding(10, 8), nn.LayerNorm(8), nn.Linear(8, 8))
    with pytest.warns(DigitalModulesWarning, match="Embedding"):
        analoglib.convert_to_analog(model, standard_hwa_2023(), on_unsupported="error")
    with pytest.warns(DigitalModulesWarning, match="excluded"):
        analoglib.convert_to_analog(
            _mixed(), standard_hwa_2023(), exclude=["2", "4"], on_unsupported="error"
        )


def test_on_unsupported_ignore_is_silent_and_bad_values_raise() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analoglib.convert_to_analog(_mixed(), standard_hwa_2023(), on_unsupported="ignore")
    with pytest.raises(ValueError, match=r"on_unsupported = 'fail' is not allowed"):
        analoglib.convert_to_analog(_mixed(), standard_hwa_2023(), on_unsupported="fail")


def test_warning_lists_bert_embeddings_and_norms() -> None:
    with pytest.warns(DigitalModulesWarning) as record:
        analoglib.convert_to_analog(_bert(), ideal())
    message = str(record[0].message)
    assert "embeddings.word_embeddings (Embedding)" in message
    assert "[normalisation, digital by design] 5 LayerNorm" in message  # 2 layers x 2 + embeddings
    assert "no analog counterpart" not in message and "excluded" not in message


def test_normalisation_alone_does_not_warn_but_is_listed() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 1, 6, 6))  # materialise the lazy layer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analog = analoglib.convert_to_analog(model, standard_hwa_2023())
    table = digital_modules(analog)
    assert list(table["module"]) == ["1"] and list(table["category"]) == ["normalisation"]
    assert analog_fraction(analog) == 1.0
