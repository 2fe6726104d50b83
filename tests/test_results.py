"""Results regression: build/results/smoke/<stem>.json against tests/expected/<stem>.smoke.json.

`make smoke` runs this right after the smoke notebooks. Every numeric leaf under `metrics` must
match within the tolerances stored in the expected file (see tools/results.py). Update the
expected files only with `make smoke-expected`, and review the diff.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("_results_tool", ROOT / "tools" / "results.py")
assert _spec is not None and _spec.loader is not None
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)

SMOKE_RESULTS = ROOT / "build" / "results" / "smoke"
PREPARED = ROOT / "build" / "smoke"  # notebooks of the last `make smoke` run
EXPECTED_FILES = sorted((ROOT / "tests" / "expected").glob("*.smoke.json"))


def _stem(path: Path) -> str:
    return path.name.removesuffix(".smoke.json")


@pytest.mark.parametrize("expected_file", EXPECTED_FILES, ids=_stem)
def test_smoke_metrics_match_expected(expected_file: Path) -> None:
    stem = _stem(expected_file)
    result_file = SMOKE_RESULTS / f"{stem}.json"
    if not result_file.is_file():
        if (PREPARED / f"{stem}.ipynb").is_file():
            pytest.fail(f"the last smoke run of {stem} wrote no {result_file.relative_to(ROOT)}")
        pytest.skip(f"no {result_file.relative_to(ROOT)}; run `make smoke`")
    expected = json.loads(expected_file.read_text())
    actual = json.loads(result_file.read_text())

    problems = results.check_tolerances(expected.get("tolerances"))
    assert not problems, f"{expected_file.name}: " + "; ".join(problems)
    assert expected.get("parameters") == actual.get("parameters"), (
        f"{stem}: the smoke parameters changed since {expected_file.name} was written; "
        "run `make smoke smoke-expected` and review the diff"
    )
    problems = results.compare_metrics(
        expected.get("metrics", {}), actual.get("metrics", {}), expected["tolerances"]
    )
    assert not problems, f"{stem}: metrics differ from {expected_file.name}:\n  " + "\n  ".join(
        problems
    )


def test_every_smoke_result_has_expected_file() -> None:
    produced = sorted(SMOKE_RESULTS.glob("*.json"))
    if not produced:
        pytest.skip("no smoke results; run `make smoke`")
    known = {_stem(p) for p in EXPECTED_FILES}
    missing = [p.stem for p in produced if p.stem not in known]
    assert not missing, (
        f"no tests/expected/<stem>.smoke.json for {', '.join(missing)}; "
        "run `make smoke-expected`, review and commit the new files"
    )


def test_result_files_of_a_notebook_run_once_per_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`results.py expected <stem>` finds <stem>.json or every <stem>__<run>.json."""
    monkeypatch.setattr(results, "RESULTS_SMOKE", tmp_path)
    for name in ("02_hwa__cnn", "02_hwa__rnn", "00_quick"):
        (tmp_path / f"{name}.json").write_text("{}")
    assert [p.name for p in results.result_files("02_hwa")] == [
        "02_hwa__cnn.json",
        "02_hwa__rnn.json",
    ]
    assert [p.name for p in results.result_files("02_hwa__rnn")] == ["02_hwa__rnn.json"]
    assert [p.name for p in results.result_files("00_quick")] == ["00_quick.json"]
    assert [p.name for p in results.result_files("03_missing")] == ["03_missing.json"]
