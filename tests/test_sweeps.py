"""Nonideality sweeps: registry, MVM-error monotonicity, resumable runner, analysis, plots.

References: ``docs/model.md#metrics`` (MVM error, A*) and 13.1 (sensitivity study).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import analoglib as al
from analoglib.config import bits_to_res
from analoglib.metrics import random_tile_mvm_error
from analoglib.presets import standard_hwa_2023
from analoglib.studies import nonideality_sensitivity as sweeps
from analoglib.studies.nonideality_sensitivity import (
    NONIDEALITIES,
    STANDARD,
    SweepFile,
    SweepSpec,
    get_nonideality,
    runner,
)
from analoglib.utils import _Paths
from analoglib.workloads import base as workload_base

ROOT = Path(__file__).resolve().parents[1]


# -- registry ------------------------------------------------------------------------------------
def test_registry_covers_the_issue_list() -> None:
    wanted = {"dac_bits", "adc_bits", "out_noise", "w_noise", "prog_noise", "drift",
              "read_noise", "ir_drop", "out_nonlinearity", "stuck_reset"}  # fmt: skip
    assert wanted <= set(NONIDEALITIES)
    for item in NONIDEALITIES.values():
        assert item.kind in sweeps.KINDS and item.family in ("input/output", "weight", "other")


@pytest.mark.parametrize("name", list(NONIDEALITIES))
def test_standard_value_gives_the_standard_model(name: str) -> None:
    item = get_nonideality(name)
    differences = item.config(item.standard_value).differences(standard_hwa_2023())
    # Stuck kinds only name where a stuck device sits; at fraction 0 nothing is stuck.
    assert [d for d in differences if not d.startswith("noise_model.stuck_kind")] == []
    assert item.is_standard(item.standard_value)


def test_grid_values_map_into_the_config() -> None:
    assert get_nonideality("dac_bits").config(6).forward.inp_res == bits_to_res(6) == 62
    assert get_nonideality("adc_bits").config(4).forward.out_res == 14
    assert get_nonideality("out_noise").config(2.0).forward.out_noise == pytest.approx(0.08)
    assert get_nonideality("w_noise").config(4.0).forward.w_noise == pytest.approx(0.07)
    assert get_nonideality("prog_noise").config(3.0).noise_model.prog_noise_scale == 3.0
    assert get_nonideality("drift").config(2.0).noise_model.drift_scale == 2.0
    assert get_nonideality("read_noise").config(0.5).noise_model.read_noise_scale == 0.5
    assert get_nonideality("ir_drop").config(8.0).forward.ir_drop == 8.0
    assert get_nonideality("out_nonlinearity").config(0.5).forward.out_nonlinearity == 0.5
    stuck = get_nonideality("stuck_g_max").config(0.01).noise_model
    assert (stuck.stuck_fraction, stuck.stuck_kind) == (0.01, "g_max")


@pytest.mark.parametrize(
    ("name", "value"), [("dac_bits", 6.5), ("adc_bits", 1), ("out_noise", -1.0),
                        ("stuck_reset", 1.5), ("drift", math.inf), ("ir_drop", "2")]
)  # fmt: skip
def test_bad_grid_values_raise(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        get_nonideality(name).check_value(value)


def test_unknown_nonideality_and_bad_spec_raise() -> None:
    with pytest.raises(ValueError, match="nonideality = 'vibration'"):
        get_nonideality("vibration")
    with pytest.raises(ValueError, match="workloads"):
        SweepSpec(workloads=(), grids={"drift": (1.0,)})
    with pytest.raises(ValueError, match="n_reps"):
        SweepSpec(workloads=("cnn",), grids={"drift": (1.0,)}, n_reps=0)
    with pytest.raises(ValueError, match="workload_overrides"):
        SweepSpec(workloads=("cnn",), grids={"drift": (1.0,)}, workload_overrides={"rnn": {}})
    with pytest.raises(ValueError, match="device = 'auto'"):
        SweepSpec(workloads=("cnn",), grids={"drift": (1.0,)}, device="auto")


# -- every scaled nonideality changes the MVM error monotonically --------------------------------
# One fixed seed for all grid values: the tile, its inputs and every noise draw are the same
# (common random numbers; stuck-device sets are nested, see test_stuck_devices.py), so the MVM
# errors along a grid differ only through the knob. Each grid step doubles the knob's
# contribution (or adds a bit), a change much larger than the run-to-run spread it would have
# with independent draws; the test still checks two seeds.
MONOTONIC_GRIDS = {
    "factor": (0.5, 1.0, 2.0, 4.0),
    "bits": (8.0, 6.0, 4.0),
    "out_nonlinearity": (0.0, 0.5, 1.0, 2.0),
    "stuck_fraction": (0.0, 0.005, 0.02, 0.08),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(NONIDEALITIES))
def test_scaling_a_nonideality_raises_the_mvm_error(name: str, seed: int) -> None:
    item = get_nonideality(name)
    grid = MONOTONIC_GRIDS.get(item.kind, MONOTONIC_GRIDS.get(item.field))
    assert grid is not None
    errors = [
        random_tile_mvm_error(item.config(v), t_inference_s=3600.0, seed=seed, n_vectors=200)
        for v in grid
    ]
    # Grids run from benign to harmful (bits downwards), so the errors must rise strictly.
    assert all(b > a for a, b in zip(errors, errors[1:], strict=False)), (name, grid, errors)


# -- replace_config ------------------------------------------------------------------------------
def test_replace_config_equals_a_fresh_conversion() -> None:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(600, 40), nn.ReLU(), nn.Linear(40, 10))
    config = get_nonideality("out_noise").config(3.0)
    config.forward.ir_drop_g_ratio = 2e5  # a derived tile constant must follow the config
    reused = al.replace_config(al.convert_to_analog(digital, standard_hwa_2023()), config)
    fresh = al.convert_to_analog(digital, config)
    x = torch.randn(32, 600, generator=torch.Generator().manual_seed(2))
    outputs = []
    for model in (reused, fresh):
        al.program(model, 5)
        al.drift(model, 3600.0, 6)
        al.set_forward_seed(model, 7)
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])


def test_replace_config_drops_programming_and_refuses_structural_changes() -> None:
    torch.manual_seed(0)
    model = al.convert_to_analog(nn.Sequential(nn.Linear(20, 5)), standard_hwa_2023())
    al.program(model, 0)
    al.replace_config(model, get_nonideality("drift").config(2.0))
    assert not any(layer.is_programmed for layer in al.analog_layers(model))
    config = standard_hwa_2023()
    config.mapping.max_input_size = 256
    with pytest.raises(ValueError, match="mapping.max_input_size"):
        al.replace_config(model, config)
    with pytest.raises(ValueError, match="PCMConfig"):
        al.replace_config(model, "standard")  # type: ignore[arg-type]


# -- runner with a fake workload (fast) ------------------------------------------------------------
class _FakeWorkload:
    metric = "accuracy"
    chance_error = 0.9

    def __init__(self, name: str) -> None:
        self.name = name

    def normalized_accuracy(self, error: float, error_fp: float) -> float:
        return al.normalized_accuracy(error, error_fp, self.chance_error)


def _fake_pipeline(monkeypatch: pytest.MonkeyPatch, crash_after: int | None = None) -> dict:
    """Replace workload loading, evaluation and the MVM error by cheap seeded stand-ins."""
    calls = {"prepare": [], "evaluate": 0}

    def prepare(spec: SweepSpec, name: str, progress: bool = True) -> Any:
        calls["prepare"].append(name)
        return SimpleNamespace(workload=_FakeWorkload(name), model=None, error_fp=0.1)

    def evaluate(prepared: Any, config: Any, t: float, seed: int) -> dict[str, float]:
        if crash_after is not None and calls["evaluate"] >= crash_after:
            raise KeyboardInterrupt("interrupted")
        calls["evaluate"] += 1
        error = 0.1 + 0.2 * np.random.default_rng(seed).random() * config.forward.out_noise
        return {"accuracy": 1 - error, "error": error}

    def mvm(config: Any, t_inference_s: float, seed: int, size: int, n_vectors: int) -> float:
        return 0.1 * config.forward.out_noise / 0.04 + (seed % 97) * 1e-4

    monkeypatch.setattr(runner, "prepare_workload", prepare)
    monkeypatch.setattr(runner, "evaluate_point", evaluate)
    monkeypatch.setattr(runner, "random_tile_mvm_error", mvm)
    return calls


def _spec(**kwargs: Any) -> SweepSpec:
    settings: dict[str, Any] = {
        "workloads": ("cnn", "rnn"),
        "grids": {"out_noise": (0.5, 1.0, 2.0, 4.0), "dac_bits": (8, 6, 4)},
        "n_reps": 2,
        "seed": 3,
    }
    settings.update(kwargs)
    return SweepSpec(**settings)


def test_points_skip_standard_values_and_seeds_are_common_within_a_repetition() -> None:
    spec = _spec()
    points = spec.points()
    # per workload: 2 standard reps + out_noise (3 non-standard values) + dac_bits (2) x 2 reps
    assert len(points) == 2 * (2 + 3 * 2 + 2 * 2)
    assert ("cnn", "out_noise", 1.0, 0) not in points and ("cnn", STANDARD, 1.0, 1) in points
    # Common random numbers: one seed per (workload, rep), shared by every knob and value.
    seeds = {(w, rep): sweeps.point_seed(spec.seed, w, rep) for w, _, _, rep in points}
    assert len(set(seeds.values())) == len(seeds) == 2 * spec.n_reps


def test_common_random_numbers_make_a_noise_curve_monotone() -> None:
    """With the same draws, the output noise only scales: its deviation grows with the factor."""
    from analoglib.nn import AnalogLinear

    torch.manual_seed(0)
    layer = AnalogLinear(64, 16, bias=False)
    x = torch.rand(32, 64)
    seed = sweeps.point_seed(0, "cnn", 0)
    outputs = []
    for factor in (0.0, 0.5, 1.0, 2.0, 4.0):
        model = al.replace_config(nn.Sequential(layer), sweeps.config_of("out_noise", factor))
        al.program(model, seed)
        al.drift(model, 3600.0, seed)
        al.set_forward_seed(model, seed)
        with torch.no_grad():
            outputs.append(model(x))
    deviations = [float((y - outputs[0]).norm()) for y in outputs[1:]]
    assert deviations == sorted(deviations) and deviations[0] > 0
    # the same draws, scaled (8x the noise), minus ADC rounding and clipping of the largest
    assert 4.0 < deviations[-1] / deviations[0] <= 8.5


def test_tolerance_text_gives_values_or_bounds_per_kind() -> None:
    factor, bits = sweeps.get_nonideality("out_noise"), sweeps.get_nonideality("dac_bits")
    grid = np.array([0.5, 1.0, 2.0, 4.0])
    assert sweeps.tolerance_text(factor, grid, 2.3, "") == "2.3×"
    assert sweeps.tolerance_text(factor, grid, 4.0, "above") == "≥4×"
    assert sweeps.tolerance_text(factor, grid, math.nan, "below") == "<0.5×"
    bit_grid = np.array([8.0, 6.0, 4.0])
    assert sweeps.tolerance_text(bits, bit_grid, 6.0, "") == "6 bit"
    assert sweeps.tolerance_text(bits, bit_grid, 4.0, "above") == "≤4 bit"
    assert sweeps.tolerance_text(bits, bit_grid, math.nan, "below") == ">8 bit"
    # through the table: every censored cell is a bound, never a bare "none"
    for a_star, expected in ((0.5, "<0.5×"), (1.0, "≥4×")):
        summary = pd.DataFrame(
            {"workload": "cnn", "nonideality": "out_noise", "scale": grid, "a_star_mean": a_star}
        )
        assert list(sweeps.tolerance_table(summary)["text"]) == [expected]


def test_interrupted_run_resumes_to_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec()
    _fake_pipeline(monkeypatch)
    full = sweeps.run_sweep(spec, tmp_path / "full.jsonl", progress=False)
    assert len(full) == len(spec.points())

    path = tmp_path / "resumed.jsonl"
    _fake_pipeline(monkeypatch, crash_after=7)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(spec, path, progress=False)
    assert len(path.read_text().splitlines()) == 1 + 7  # header + finished points
    calls = _fake_pipeline(monkeypatch)
    resumed = sweeps.run_sweep(spec, path, progress=False)
    assert calls["evaluate"] == len(spec.points()) - 7  # nothing redone
    pd.testing.assert_frame_equal(resumed, full)
    # A finished sweep loads no workload and computes nothing.
    calls = _fake_pipeline(monkeypatch)
    again = sweeps.run_sweep(spec, path, progress=False)
    assert calls == {"prepare": [], "evaluate": 0}
    pd.testing.assert_frame_equal(again, full)


def test_torn_last_line_is_dropped_and_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(workloads=("cnn",))
    _fake_pipeline(monkeypatch)
    full = sweeps.run_sweep(spec, tmp_path / "full.jsonl", progress=False)
    path = tmp_path / "torn.jsonl"
    sweeps.run_sweep(spec, path, progress=False, max_points=5)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # cut mid-line
    resumed = sweeps.run_sweep(spec, path, progress=False)
    pd.testing.assert_frame_equal(resumed, full)
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_results_of_other_parameters_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_pipeline(monkeypatch)
    path = tmp_path / "sweep.jsonl"
    sweeps.run_sweep(_spec(), path, progress=False, max_points=2)
    with pytest.raises(ValueError, match="other sweep parameters"):
        sweeps.run_sweep(_spec(seed=4), path, progress=False)
    assert _spec().key() != _spec(seed=4).key()
    assert _spec().default_path().parent == al.paths.CACHE / "sweeps"


def test_corrupt_middle_line_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    parameters = _spec().parameters()
    path.write_text(json.dumps({"header": parameters}) + "\n{not json\n{}\n")
    with pytest.raises(ValueError, match="line 2"):
        SweepFile(path, parameters)


# -- runner with a real workload, killed with SIGKILL ----------------------------------------------
_CHILD = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from analoglib.studies import nonideality_sensitivity as sweeps
    spec = sweeps.SweepSpec(**eval(sys.argv[2]))
    sweeps.run_sweep(spec, sys.argv[1], progress=False)
    """
)


def _real_spec() -> dict[str, Any]:
    return {
        "workloads": ("cnn",),
        "grids": {"out_noise": (1.0, 2.0, 4.0, 8.0), "prog_noise": (2.0, 4.0), "dac_bits": (6,)},
        "n_reps": 2,
        "seed": 1,
        "profile": "smoke",
        "workload_overrides": {"cnn": {"epochs": 1}},
        "calibration_batches": 2,
        "mvm_vectors": 50,
        "mvm_size": 64,
    }


def test_sweep_killed_half_way_resumes_to_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_paths = _Paths(tmp_path)
    monkeypatch.setattr(workload_base, "paths", fake_paths)
    monkeypatch.setattr(runner, "paths", fake_paths)
    settings = _real_spec()
    spec = SweepSpec(**settings)
    n_points = len(spec.points())

    path = tmp_path / "killed.jsonl"
    env = {**os.environ, "ANALOGLIB_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), repr(settings)], env=env, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            if path.exists() and len(path.read_bytes().splitlines()) >= 1 + 4:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the sweep finished (or failed) before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    finished = len(path.read_bytes().splitlines()) - 1
    assert 4 <= finished < n_points

    # The child trained and cached the FP model under tmp_path, as the in-process runs use.
    # One intra-op thread, as in the child, so that both processes compute the same floats.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = sweeps.run_sweep(spec, path, progress=False)
        uninterrupted = sweeps.run_sweep(spec, tmp_path / "full.jsonl", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(resumed) == n_points
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert resumed["a_star"].between(-1, 1.5).all() and (resumed["error_fp"] < 0.9).all()


# -- analysis ------------------------------------------------------------------------------------
def test_tolerance_interpolates_in_log_scale() -> None:
    item = get_nonideality("out_noise")
    tol, censored = sweeps.interpolate_tolerance(
        item, [4, 1, 0.5, 2], [0.9, 0.995, 1.0, 0.985], 0.99
    )
    # crossing halfway (in A*) between 1x and 2x: sqrt(2) in log scale
    assert censored == "" and tol == pytest.approx(math.sqrt(2))
    assert sweeps.interpolate_tolerance(item, [0.5, 1], [0.995, 0.991], 0.99) == (1.0, "above")
    tol, censored = sweeps.interpolate_tolerance(item, [0.5, 1], [0.98, 0.9], 0.99)
    assert math.isnan(tol) and censored == "below"


def test_tolerance_of_bits_is_the_fewest_bits_and_absolute_grids_start_at_zero() -> None:
    bits = get_nonideality("dac_bits")
    values, a_star = [8, 7, 6, 5, 4], [1.0, 0.995, 0.992, 0.98, 0.5]
    assert sweeps.interpolate_tolerance(bits, values, a_star, 0.99) == (6.0, "")
    stuck = get_nonideality("stuck_reset")
    tol, _ = sweeps.interpolate_tolerance(stuck, [0, 0.01, 0.02], [1.0, 0.98, 0.9], 0.99)
    assert tol == pytest.approx(0.005)  # linear between 0 and the first positive value


def _summary_rows() -> pd.DataFrame:
    rows = []
    curves = {  # (workload, nonideality): [(scale, mvm_error, a_star)]
        ("cnn", "out_noise"): [(1, 0.15, 0.995), (2, 0.25, 0.9), (4, 0.4, 0.6)],
        ("cnn", "prog_noise"): [(1, 0.15, 0.995), (2, 0.18, 0.99), (4, 0.3, 0.95)],
        ("rnn", "out_noise"): [(1, 0.15, 1.0), (2, 0.25, 0.99), (4, 0.4, 0.9)],
        ("rnn", "prog_noise"): [(1, 0.15, 1.0), (2, 0.18, 1.0), (4, 0.3, 0.99)],
    }
    for (workload, name), points in curves.items():
        for scale, eps, a in points:
            rows.append({"workload": workload, "nonideality": name, "scale": float(scale),
                         "mvm_error_mean": eps, "a_star_mean": a, "a_star_std": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_star_at_equal_mvm_error_and_findings() -> None:
    summary = _summary_rows()
    equal = sweeps.a_star_at_mvm_error(summary, target=0.2)
    cnn_out = equal.query("workload == 'cnn' and nonideality == 'out_noise'")["a_star"].item()
    assert cnn_out == pytest.approx(0.995 + 0.5 * (0.9 - 0.995))
    cnn_prog = equal.query("workload == 'cnn' and nonideality == 'prog_noise'")["a_star"].item()
    assert cnn_prog == pytest.approx(0.99 + (0.02 / 0.12) * (0.95 - 0.99))
    assert sweeps.a_star_at_mvm_error(summary, target=0.5)["a_star"].isna().all()
    findings = sweeps.check_findings(summary, equal)
    assert findings["io_vs_weight"]["cnn"]["holds"] is True
    assert findings["io_worse_holds"] is True and findings["rnn_most_robust"] is True


def test_summarize_completes_curves_with_the_standard_points() -> None:
    rows = []
    for rep in range(2):
        rows.append({"workload": "cnn", "nonideality": STANDARD, "scale": 1.0, "rep": rep,
                     "mvm_error": 0.15, "a_star": 0.99 + 0.01 * rep, "error": 0.1})  # fmt: skip
        rows.append({"workload": "cnn", "nonideality": "dac_bits", "scale": 6.0, "rep": rep,
                     "mvm_error": 0.2, "a_star": 0.9, "error": 0.2})  # fmt: skip
    summary = sweeps.summarize(pd.DataFrame(rows))
    assert list(summary["scale"]) == [6.0, 8.0]
    standard = summary[summary["scale"] == 8.0].iloc[0]
    assert standard["a_star_mean"] == pytest.approx(0.995) and standard["n_reps"] == 2
    assert standard["a_star_std"] == pytest.approx(np.std([0.99, 1.0], ddof=1))


def test_plots_draw_the_sweep(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    summary = _summary_rows()
    tolerances = sweeps.tolerance_table(summary)
    assert set(tolerances["text"]) >= {"≥4×"}
    for fig in (
        sweeps.plot_sweep_a_star(summary),
        sweeps.plot_a_star_vs_mvm_error(summary),
        sweeps.plot_tolerance_heatmap(tolerances),
    ):
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError, match="summary lacks"):
        sweeps.plot_sweep_a_star(summary.drop(columns="a_star_std"))


def test_tolerance_table_takes_one_threshold_per_workload() -> None:
    summary = _summary_rows()
    absolute = sweeps.tolerance_table(summary, threshold=0.999)
    relative = sweeps.tolerance_table(summary, threshold={"cnn": 0.985, "rnn": 0.999})
    cnn_out = "workload == 'cnn' and nonideality == 'out_noise'"
    assert absolute.query(cnn_out)["censored"].item() == "below"
    # cnn out_noise: 0.995 at 1x, 0.9 at 2x -> crosses 0.985 at 10/95 of the way in log scale
    expected = math.exp(math.log(2) * (0.995 - 0.985) / (0.995 - 0.9))
    assert relative.query(cnn_out)["tolerance"].item() == pytest.approx(expected)
    assert set(relative["threshold"]) == {0.985, 0.999}


# -- the same sweep on a Dask cluster -------------------------------------------------------------
def test_sweep_on_a_local_cluster_equals_the_in_process_run_and_survives_a_killed_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    distributed = pytest.importorskip("distributed")
    from analoglib.parallel import PointError

    fake_paths = _Paths(tmp_path)
    monkeypatch.setattr(workload_base, "paths", fake_paths)
    monkeypatch.setattr(runner, "paths", fake_paths)
    spec = SweepSpec(**_real_spec())
    n_points = len(spec.points())
    reference = sweeps.run_sweep(spec, tmp_path / "in_process.jsonl", progress=False, threads=1)
    assert len(reference) == n_points

    # The workers find the FP checkpoint the in-process run cached, under the same root.
    env = {"ANALOGLIB_ROOT": str(tmp_path), "ANALOGLIB_PROGRESS": "0"}
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
    )
    client = distributed.Client(cluster)
    try:
        clean = sweeps.run_sweep(
            spec, tmp_path / "cluster.jsonl", progress=False, executor=client, threads=1
        )
        pd.testing.assert_frame_equal(clean, reference)

        # Kill one worker process once a few points are stored; the scheduler reruns its
        # tasks elsewhere (or the run fails with the point named), and a rerun completes.
        path = tmp_path / "killed.jsonl"
        killed: list[int] = []

        def kill_a_worker() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if path.exists() and len(path.read_bytes().splitlines()) >= 1 + 3:
                    pid = next(iter(client.run(os.getpid).values()))
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_a_worker)
        killer.start()
        try:
            table = sweeps.run_sweep(spec, path, progress=False, executor=client, threads=1)
        except PointError:
            table = sweeps.run_sweep(spec, path, progress=False, executor=client, threads=1)
        killer.join()
        assert killed, "no worker was killed: the sweep finished too fast"
        pd.testing.assert_frame_equal(table, reference)
    finally:
        client.close()
        cluster.close()


def test_rising_steps_lists_only_rises_beyond_the_error_bars() -> None:
    summary = pd.DataFrame(
        {
            "workload": "cnn",
            "nonideality": ["out_noise"] * 4 + ["dac_bits"] * 3,
            "scale": [0.5, 1.0, 2.0, 4.0, 8.0, 6.0, 4.0],
            # out_noise: 1 -> 2 rises by 0.03 with bars 0.02 (listed); 2 -> 4 falls
            # dac_bits (harm: 8 -> 6 -> 4 bits): 6 -> 4 rises by 0.01 within bars 0.02
            "a_star_mean": [0.99, 0.95, 0.98, 0.5, 0.99, 0.9, 0.91],
            "a_star_std": [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01],
        }
    )
    steps = sweeps.rising_steps(summary)
    assert steps[["nonideality", "from_value", "to_value"]].values.tolist() == [
        ["out_noise", 1.0, 2.0]
    ]
    assert steps["rise"].iloc[0] == pytest.approx(0.03)
    assert sweeps.rising_steps(summary[summary["nonideality"] == "dac_bits"]).empty
