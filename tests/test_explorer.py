"""The nonideality explorer (analoglib.studies.explorer, notebook 99_explorer)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from analoglib.metrics import random_tile_mvm_error
from analoglib.nn.convert import analog_layers
from analoglib.presets import standard_hwa_2023
from analoglib.studies import explorer as study

# Small but real: a briefly trained CNN, one 128 x 128 random matrix, two programmings.
MVM_SIZE = 128
MVM_VECTORS = 16


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("explorer_cache")


@pytest.fixture(scope="module")
def state(cache_dir: Path) -> study.ExplorerState:
    return study.prepare_explorer(
        seed=0,
        epochs=4,
        lr=3e-3,
        n_reps=2,
        mvm_vectors=MVM_VECTORS,
        mvm_size=MVM_SIZE,
        progress=False,
        cache_dir=cache_dir,
    )


def test_standard_settings_are_the_standard_preset() -> None:
    assert study.STANDARD.config().differences(standard_hwa_2023()) == []
    assert study.STANDARD.t_inference_s == 3600.0
    assert study.STANDARD.describe() == "standard"


def test_each_knob_sets_its_config_field() -> None:
    settings = study.ExplorerSettings(
        dac_bits=6,
        adc_bits=7,
        out_noise=0.1,
        prog_noise_scale=2.0,
        read_noise_scale=3.0,
        ir_drop=0.5,
        gdc=False,
        tile_size=128,
    )
    config = settings.config()
    assert (config.forward.inp_res, config.forward.out_res) == (62, 126)
    assert config.forward.out_noise == 0.1
    assert config.forward.ir_drop == 0.5
    assert config.noise_model.prog_noise_scale == 2.0
    assert config.noise_model.read_noise_scale == 3.0
    assert config.drift_compensation.type == "none"
    assert (config.mapping.max_input_size, config.mapping.max_output_size) == (128, 128)
    assert len(config.differences(standard_hwa_2023())) == 9
    assert settings.describe().startswith("dac_bits 6, adc_bits 7, out_noise 0.1")


def test_standard_mvm_error_is_random_tile_mvm_error(state: study.ExplorerState) -> None:
    result = study.explore(study.STANDARD, state)
    expected = random_tile_mvm_error(
        standard_hwa_2023(),
        t_inference_s=3600.0,
        seed=state.mvm_seed,
        size=MVM_SIZE,
        n_vectors=MVM_VECTORS,
    )
    assert result.mvm_error == expected
    assert 0.05 < result.mvm_error < 0.3  # the standard model is near 13 %


def test_more_output_noise_gives_a_larger_mvm_error(state: study.ExplorerState) -> None:
    standard = study.explore(study.STANDARD, state)
    noisier = study.explore({"out_noise": 4 * study.STANDARD.out_noise}, state)
    assert noisier.mvm_error > standard.mvm_error * 1.05


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"dac_bits": 1}, "dac_bits"),
        ({"adc_bits": 8.5}, "adc_bits"),
        ({"adc_bits": 17}, "adc_bits"),
        ({"out_noise": -0.1}, "out_noise"),
        ({"prog_noise_scale": math.nan}, "prog_noise_scale"),
        ({"read_noise_scale": "1"}, "read_noise_scale"),
        ({"t_inference_s": -1.0}, "t_inference_s"),
        ({"ir_drop": math.inf}, "ir_drop"),
        ({"gdc": "global"}, "gdc"),
        ({"tile_size": 100}, "tile_size"),
        ({"tile_size": True}, "tile_size"),
        ({"w_noise": 0.0}, "w_noise"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_field(
    state: study.ExplorerState, values: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b.*(not allowed|not known)"):
        study.explore(values, state)


def test_settings_that_are_not_a_mapping_are_refused(state: study.ExplorerState) -> None:
    with pytest.raises(ValueError, match="settings"):
        study.explore([("out_noise", 0.1)], state)  # type: ignore[arg-type]


def test_ideal_ish_setting_keeps_the_fp_accuracy(state: study.ExplorerState) -> None:
    ideal_ish = {
        "dac_bits": 10,
        "adc_bits": 10,
        "out_noise": 0.0,
        "prog_noise_scale": 0.0,
        "read_noise_scale": 0.0,
        "ir_drop": 0.0,
        "t_inference_s": 1.0,
    }
    result = study.explore(ideal_ish, state)
    assert state.fp_accuracy > 0.8
    assert result.accuracy > 0.8
    assert result.accuracy > state.fp_accuracy - 0.03
    assert result.mvm_error < 0.05  # the standard model is near 13 %


def test_drift_without_compensation_costs_accuracy(state: study.ExplorerState) -> None:
    late = {"t_inference_s": study.TEN_YEARS_S}
    with_gdc = study.explore(late, state)
    without_gdc = study.explore({**late, "gdc": False}, state)
    assert without_gdc.mvm_error > 2 * with_gdc.mvm_error
    assert without_gdc.accuracy < with_gdc.accuracy - 0.1


def test_results_are_deterministic_and_cached(state: study.ExplorerState) -> None:
    settings = study.ExplorerSettings(out_noise=0.08, t_inference_s=86400.0)
    first = study.explore(settings, state)
    assert study.explore(settings, state) is first
    again = study.explore(settings, state, use_cache=False)
    assert (again.mvm_error, again.accuracies) == (first.mvm_error, first.accuracies)
    assert len(first.accuracies) == state.n_reps


def test_tile_size_change_converts_once_per_size(state: study.ExplorerState) -> None:
    result = study.explore({"tile_size": 128}, state)
    model = state.model_for(128)
    assert state.model_for(128) is model
    assert model is not state.model_for(study.STANDARD_TILE_SIZE)
    sizes = {layer.config.mapping.max_input_size for layer in analog_layers(model)}
    assert sizes == {128}
    assert result.accuracy > 0.5


def test_update_restores_torch_threads(state: study.ExplorerState) -> None:
    before = torch.get_num_threads()
    study.explore({"out_noise": 0.05}, state, use_cache=False)
    assert torch.get_num_threads() == before


def test_trained_model_is_loaded_from_the_cache(
    state: study.ExplorerState, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: Any, **kwargs: Any) -> list[float]:
        raise AssertionError("the cached checkpoint should have been loaded")

    monkeypatch.setattr(study, "fit", no_training)
    split = state.split
    model, path = study.load_or_train_digits_cnn(split, 0, 4, 64, 3e-3, cache_dir=cache_dir)
    assert path.parent == cache_dir and path.is_file()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state.fp_model.state_dict()[name].cpu())


def test_plot_results_marks_the_standard(state: study.ExplorerState) -> None:
    standard = study.explore(study.STANDARD, state)
    noisier = study.explore({"out_noise": 0.16}, state)
    fig = study.plot_results([standard, noisier], standard=standard, labels=["a", "b"])
    ax_mvm, ax_acc = fig.axes
    dashed = [line for line in ax_mvm.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in dashed] == [100 * standard.mvm_error]
    assert {t.get_text() for t in ax_acc.get_legend().get_texts()} == {
        "current",
        "standard",
        "FP",
    }
    with pytest.raises(ValueError, match="labels"):
        study.plot_results([standard], labels=["a", "b"])


def test_format_duration() -> None:
    assert study.format_duration_s(1) == "1 s"
    assert study.format_duration_s(3600) == "1 h"
    assert study.format_duration_s(study.TEN_YEARS_S) == "10 y"
    with pytest.raises(ValueError, match="seconds"):
        study.format_duration_s(-1)


def test_build_explorer_creates_widgets_without_a_display(state: study.ExplorerState) -> None:
    widgets = pytest.importorskip("ipywidgets")
    app = study.build_explorer(state, history_length=2)
    assert isinstance(app.widget, widgets.VBox)
    assert list(app.controls) == list(study.KNOBS)
    assert app.settings() == study.STANDARD
    assert app.history == [app.standard]
    app.controls["out_noise"].value = 0.16  # fires the update, as a slider release does
    assert app.history[-1].settings == study.STANDARD.replace(out_noise=0.16)
    app.controls["gdc"].value = False
    assert len(app.history) == 2  # history_length
    assert app.history[-1].settings.changes() == {"out_noise": 0.16, "gdc": False}
    images = [w for w in _walk(app.widget) if isinstance(w, widgets.Image)]
    assert len(images) == 1 and bytes(images[0].value).startswith(b"\x89PNG")
    assert app.reset().settings == study.STANDARD
    assert app.settings() == study.STANDARD


def _walk(widget: Any) -> list[Any]:
    found = [widget]
    for child in getattr(widget, "children", ()):
        found += _walk(child)
    return found
