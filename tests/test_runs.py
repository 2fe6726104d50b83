"""Notebook runs: parameters checked before any work, outputs routed away from committed files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

import analoglib as al
from analoglib import plotting, runs, utils
from analoglib.runs import ParameterError, declared_parameters, start_run

STEM = "00_quickstart"


def _defaults(stem: str = STEM) -> dict[str, Any]:
    source = runs._notebook_parameters_source(stem)
    return {name: p.default for name, p in declared_parameters(source).items()}


def _injected(namespace: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The namespace after papermill's injected cell assigned ``values``."""
    cell = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    return {**namespace, **values, "In": ["", "seed: int = 0\n", cell]}


def _labelled_figure() -> plt.Figure:
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    ax.set(xlabel="x", ylabel="y", title="panel")
    return fig


@pytest.fixture
def tmp_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> utils._Paths:
    """A temporary project root with a copy of the notebooks."""
    shutil.copytree(utils.paths.ROOT / "notebooks", tmp_path / "notebooks")
    fake = utils._Paths(tmp_path)
    monkeypatch.setattr(utils, "paths", fake)
    monkeypatch.setattr(plotting, "paths", fake)
    return fake


def test_defaults_pass_and_every_parameter_is_recorded() -> None:
    defaults = _defaults()
    run = start_run(STEM, {**defaults, "In": []})
    assert run.parameters == defaults
    assert run.profile == "default"
    assert run.output_dir == utils.SCRATCH_OUTPUTS
    assert "build/scratch" in repr(run)


def test_every_numbered_notebook_declares_profile_and_output_dir_with_scratch_default() -> None:
    for path in sorted((utils.paths.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        defaults = _defaults(path.stem)
        assert defaults["output_dir"] == utils.SCRATCH_OUTPUTS, path.name
        assert start_run(path.stem, defaults).parameters == defaults


def test_unknown_injected_name_stops_the_run_naming_it() -> None:
    namespace = _injected(_defaults(), n_repz=3)
    with pytest.raises(ParameterError, match="'n_repz'"):
        start_run(STEM, namespace)


def test_known_injected_names_pass() -> None:
    run = start_run(STEM, _injected(_defaults(), n_reps=3, lr=1))  # an int is a valid float
    assert run.parameters["n_reps"] == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_reps", "3"),
        ("n_reps", 2.5),
        ("n_reps", True),
        ("lr", "fast"),
        ("save_figures", 1),
        ("t_inferences", 3600),
        ("profile", None),
    ],
)
def test_wrong_type_stops_the_run_naming_the_parameter(name: str, value: Any) -> None:
    namespace = _injected(_defaults(), **{name: value})
    with pytest.raises(ParameterError, match=rf"^{name} = "):
        start_run(STEM, namespace)


def test_none_only_where_it_is_the_default() -> None:
    stem = "01_nonideality_sensitivity"
    assert start_run(stem, _defaults(stem)).parameters["scheduler_address"] is None
    with pytest.raises(ParameterError, match="^seed = None"):
        start_run(stem, {**_defaults(stem), "seed": None})


def test_unknown_profile_and_empty_output_dir_stop_the_run() -> None:
    with pytest.raises(ParameterError, match="profile = 'fast' is not allowed"):
        start_run(STEM, {**_defaults(), "profile": "fast"})
    with pytest.raises(ParameterError, match="output_dir = '' is not allowed"):
        start_run(STEM, {**_defaults(), "output_dir": ""})


def test_unknown_stem_is_refused() -> None:
    with pytest.raises(ValueError, match="stem = '42_nothing'"):
        start_run("42_nothing", {})


def test_scratch_run_never_writes_the_committed_folders(tmp_outputs: utils._Paths) -> None:
    run = start_run(STEM, _defaults())
    pdf, png = run.savefig(_labelled_figure(), f"{STEM}__panel")
    results = run.write_results({"x": 1})
    root = tmp_outputs.ROOT
    assert pdf.parent == png.parent == root / "build/scratch/default/figures"
    assert results == root / "build/scratch/default/results" / f"{STEM}.json"
    assert not (root / "figures").exists()
    assert not (root / "build/results").exists()
    assert json.loads(results.read_text())["parameters"]["output_dir"] == "build/scratch"


def test_committed_run_writes_figures_and_build_results(tmp_outputs: utils._Paths) -> None:
    run = start_run(STEM, {**_defaults(), "output_dir": "committed"})
    pdf, _ = run.savefig(_labelled_figure(), f"{STEM}__panel")
    assert pdf.parent == tmp_outputs.ROOT / "figures"
    assert run.write_results({}) == tmp_outputs.ROOT / "build/results/default" / f"{STEM}.json"
    smoke = start_run(STEM, {**_defaults(), "output_dir": "committed", "profile": "smoke"})
    assert smoke.figures_dir == tmp_outputs.ROOT / "build/smoke/figures"


def test_figure_name_must_belong_to_the_notebook(tmp_outputs: utils._Paths) -> None:
    run = start_run(STEM, _defaults())
    with pytest.raises(ValueError, match="name = '01_other__panel'"):
        run.savefig(plt.figure(), "01_other__panel")


def test_papermill_run_with_unknown_parameter_fails_in_the_first_cell(tmp_path: Path) -> None:
    """A real kernel: the injected typo stops the run before the cell that does the work."""
    nbformat = pytest.importorskip("nbformat")
    papermill = pytest.importorskip("papermill")
    marker = tmp_path / "work_done"
    params = nbformat.v4.new_code_cell(
        'profile: str = "default"  # profile\n'
        'output_dir: str = "build/scratch"  # outputs\n'
        "n_reps: int = 1  # repetitions\n"
    )
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell(
        'import analoglib as al\nrun = al.runs.start_run("50_tiny", globals())'
    )
    work = nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('done')")
    notebook = nbformat.v4.new_notebook(cells=[params, check, work])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    (tmp_path / "notebooks").mkdir()
    source = tmp_path / "notebooks" / "50_tiny.ipynb"
    nbformat.write(notebook, source)
    env = {"ANALOGLIB_ROOT": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        papermill.execute_notebook(
            str(source), str(tmp_path / "ok.ipynb"), parameters={"n_reps": 2}, kernel_name="python3"
        )
        assert marker.exists()
        marker.unlink()
        with pytest.raises(papermill.PapermillExecutionError, match="n_repz"):
            papermill.execute_notebook(
                str(source),
                str(tmp_path / "bad.ipynb"),
                parameters={"n_repz": 2},
                kernel_name="python3",
            )
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert not marker.exists()


def test_top_level_name() -> None:
    assert al.runs.start_run is start_run
