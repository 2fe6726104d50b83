"""The HWA study runner of notebook 02: resumable, equal to evaluate_variants, and spreadable."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from analoglib.studies import hwa_retraining as study
from analoglib.utils import _Paths
from analoglib.workloads import base as workload_base

SPEC = study.HWAStudySpec(
    "cnn", "smoke", eval_batches=1, calibration_batches=2, t_inferences=(1.0, 3600.0), n_reps=2
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = _Paths(tmp_path)
    monkeypatch.setattr(workload_base, "paths", fake)
    monkeypatch.setattr(study, "paths", fake)
    return tmp_path


def test_spec_resolves_the_recipe_sizes_and_refuses_bad_values() -> None:
    spec = study.HWAStudySpec("rnn", "smoke")
    _, _, sizes = study.hwa_recipe("rnn", "smoke")
    assert spec.eval_batches == sizes["eval_batches"]
    assert spec.calibration_batches == sizes["calibration_batches"]
    assert len(spec.points()) == 2 * 2 * spec.n_reps
    with pytest.raises(ValueError, match="n_reps"):
        study.HWAStudySpec("rnn", "smoke", n_reps=0)
    with pytest.raises(ValueError, match="t_inferences"):
        study.HWAStudySpec("rnn", "smoke", t_inferences=())
    with pytest.raises(ValueError, match="workload"):
        study.HWAStudySpec("mlp", "smoke")


def test_run_variants_equals_evaluate_variants_and_resumes(root: Path) -> None:
    variants = study.prepare_variants(SPEC, progress=False)
    reference = study.evaluate_variants(
        variants.models,
        variants.workload.evaluate,
        SPEC.t_inferences,
        SPEC.n_reps,
        SPEC.seed,
        progress=False,
    )
    table = study.run_variants(SPEC, variants, progress=False)
    pd.testing.assert_frame_equal(table, reference)

    # Drop the last three points from the file: a rerun computes exactly those again.
    path = SPEC.default_path()
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))
    again = study.run_variants(SPEC, variants, progress=False)
    pd.testing.assert_frame_equal(again, reference)
    assert len(path.read_text().splitlines()) == 1 + len(SPEC.points())


def test_run_variants_on_a_local_cluster_equals_the_in_process_run(root: Path) -> None:
    distributed = pytest.importorskip("distributed")
    in_process = study.run_variants(SPEC, progress=False, threads=1, path=root / "a.jsonl")
    env = {"ANALOGLIB_ROOT": str(root), "ANALOGLIB_PROGRESS": "0"}
    start = time.monotonic()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        spread = study.run_variants(
            SPEC, executor=client, threads=1, progress=False, path=root / "b.jsonl"
        )
    assert time.monotonic() - start < 300
    pd.testing.assert_frame_equal(spread, in_process)
