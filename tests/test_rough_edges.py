"""No silent surprises: bad weights, inputs and metrics are refused; finished work is kept."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import analoglib as al
from analoglib.nn.base import CLIP_WARNING_FRACTION, InputClippingWarning
from analoglib.presets import standard_hwa_2023


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def test_evaluate_keeps_the_finished_rows_when_eval_fn_raises() -> None:
    model = al.convert_to_analog(_net(), standard_hwa_2023())
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    calls = []

    def eval_fn(m: nn.Module) -> float:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("the data server went away")
        return float(m(x).abs().mean())

    with pytest.raises(RuntimeError, match="went away") as caught:
        al.evaluate(model, eval_fn, [1.0, 3600.0], n_reps=3, seed=0, progress=False)
    partial = caught.value.partial_results  # type: ignore[attr-defined]
    assert len(partial) == 4
    assert list(partial["rep"]) == [0, 0, 1, 1]
    # The finished rows are the rows an uninterrupted run gives.
    full = al.evaluate(
        model, lambda m: float(m(x).abs().mean()), [1.0, 3600.0], 3, 0, progress=False
    )
    assert partial.equals(full.iloc[:4])


def test_evaluate_rejects_nan_metrics_and_keeps_the_rows_before() -> None:
    model = al.convert_to_analog(_net(), standard_hwa_2023())
    values = iter([0.5, 0.4, float("nan")])
    with pytest.raises(ValueError, match="NaN for 'accuracy' at repetition 1") as caught:
        al.evaluate(model, lambda m: {"accuracy": next(values)}, [1.0, 60.0], 2, 0, progress=False)
    assert list(caught.value.partial_results["accuracy"]) == [0.5, 0.4]  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_conversion_and_programming(bad: float) -> None:
    net = _net()
    with torch.no_grad():
        net[0].weight[2, 3] = bad
    with pytest.raises(ValueError, match=r"weight holds 1 NaN or infinite value\(s\)"):
        al.convert_to_analog(net, standard_hwa_2023())
    model = al.convert_to_analog(_net(), standard_hwa_2023())
    with torch.no_grad():
        al.analog_layers(model)[1].weight[0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        al.program(model, 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_inputs_of_another_dtype_are_refused_with_the_dtype_named(dtype: torch.dtype) -> None:
    model = al.convert_to_analog(_net(), standard_hwa_2023()).eval()
    with pytest.raises(ValueError, match=f"dtype {dtype}, the layer torch.float32"):
        model(torch.randn(4, 16, dtype=dtype))


def test_double_model_takes_double_inputs() -> None:
    model = al.convert_to_analog(_net(), al.presets.ideal()).double().eval()
    x = torch.randn(4, 16, dtype=torch.float64)
    with torch.no_grad():
        assert model(x).dtype == torch.float64


def test_clipping_warns_once_before_calibration_and_not_after() -> None:
    model = al.convert_to_analog(_net(), standard_hwa_2023()).eval()
    x = 10.0 * torch.randn(64, 16, generator=torch.Generator().manual_seed(2))  # range 3 clips
    with pytest.warns(InputClippingWarning, match="calibrate_input_ranges") as record:
        with torch.no_grad():
            model(x)
    clipping = [w for w in record if w.category is InputClippingWarning]
    assert 1 <= len(clipping) <= len(al.analog_layers(model))  # at most once per layer
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputClippingWarning)
        with torch.no_grad():
            model(x)  # each layer has warned already
    assert 0 < CLIP_WARNING_FRACTION < 0.1

    calibrated = al.convert_to_analog(_net(), standard_hwa_2023())
    al.optim.calibrate_input_ranges(calibrated, [(x, None)], run_batch=lambda m, b: m(b[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputClippingWarning)
        with torch.no_grad():
            calibrated.eval()(x)
