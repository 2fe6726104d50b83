"""Results JSON helpers: `make smoke-expected` and the comparison used by tests/test_results.py.

Usage:
    python tools/results.py expected [STEM ...]

`expected` copies build/results/smoke/<stem>.json (written by each notebook's last cell) into
tests/expected/<stem>.smoke.json; a notebook run once per workload writes <stem>__<run>.json,
and `expected <stem>` copies each of them (`expected <stem>__<run>` just one). It keeps the
`tolerances` of an existing expected file and adds the default tolerance for every new
top-level metric, so a tolerance change is always a visible, reviewed diff.

Metric paths join dict keys with "." and list indices with "[i]", e.g. `accuracy.mean[2]`.
A tolerance entry applies to its path and everything below it; the most specific entry wins,
then `default`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_SMOKE = ROOT / "build" / "results" / "smoke"
EXPECTED = ROOT / "tests" / "expected"
DEFAULT_TOLERANCE = {"rtol": 0.05, "atol": 0.02}
# Keys copied from a results JSON into an expected file. versions, git_sha and device are left
# out: they change with every commit or machine and would make every regeneration a diff.
KEPT_KEYS = ("stem", "profile", "data_source", "parameters", "metrics")
NOTE = "Written by `make smoke-expected` (tools/results.py); edit only `tolerances` by hand."


def expected_path(stem: str) -> Path:
    """Return tests/expected/<stem>.smoke.json."""
    return EXPECTED / f"{stem}.smoke.json"


def is_number(value: Any) -> bool:
    """Return True for int/float leaves (bool is excluded: it is compared exactly)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def iter_leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every non-container leaf of nested dicts and lists."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from iter_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from iter_leaves(value, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def parent_paths(path: str) -> Iterator[str]:
    """Yield `path` and then each enclosing path, most specific first."""
    while path:
        yield path
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""


def tolerance_for(path: str, tolerances: dict[str, Any]) -> tuple[float, float]:
    """Return (rtol, atol) for a metric path."""
    for candidate in parent_paths(path):
        if candidate in tolerances:
            entry = tolerances[candidate]
            break
    else:
        entry = tolerances.get("default", DEFAULT_TOLERANCE)
    return float(entry["rtol"]), float(entry["atol"])


def check_tolerances(tolerances: Any) -> list[str]:
    """Return problems with a `tolerances` mapping (each entry needs rtol, atol >= 0)."""
    if not isinstance(tolerances, dict) or "default" not in tolerances:
        return ["`tolerances` must be a mapping with a `default` entry"]
    problems = []
    for path, entry in tolerances.items():
        ok = isinstance(entry, dict) and all(
            is_number(entry.get(k)) and entry[k] >= 0 for k in ("rtol", "atol")
        )
        if not ok:
            problems.append(f"tolerance `{path}` must be {{rtol: >=0, atol: >=0}}, got {entry!r}")
    return problems


def compare_metrics(expected: Any, actual: Any, tolerances: dict[str, Any]) -> list[str]:
    """Compare two `metrics` trees; return one message per mismatch.

    Numeric leaves must satisfy |actual - expected| <= atol + rtol * |expected| (NaN matches
    only NaN); booleans must be equal; other leaves (strings, None) are not compared. A leaf
    present on one side only is a mismatch.
    """
    want = dict(iter_leaves(expected))
    got = dict(iter_leaves(actual))
    problems = [
        f"{p}: missing from the results (expected {want[p]!r})" for p in want if p not in got
    ]
    problems += [f"{p}: not in the expected file (new metric?)" for p in got if p not in want]
    for path, exp in want.items():
        if path not in got:
            continue
        act = got[path]
        if isinstance(exp, bool) or isinstance(act, bool):
            if exp is not act:
                problems.append(f"{path}: expected {exp!r}, got {act!r}")
        elif is_number(exp):
            if not is_number(act):
                problems.append(f"{path}: expected a number ({exp!r}), got {act!r}")
                continue
            rtol, atol = tolerance_for(path, tolerances)
            if math.isnan(exp) or math.isnan(act):
                ok = math.isnan(exp) and math.isnan(act)
            else:
                ok = abs(act - exp) <= atol + rtol * abs(exp)
            if not ok:
                problems.append(
                    f"{path}: expected {exp:.6g}, got {act:.6g} "
                    f"(|diff| {abs(act - exp):.3g} > atol {atol:g} + rtol {rtol:g} * |expected|)"
                )
    return problems


def make_expected(result: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Build an expected-file dict from a smoke result, keeping the previous tolerances."""
    tolerances = dict((previous or {}).get("tolerances") or {})
    tolerances.setdefault("default", dict(DEFAULT_TOLERANCE))
    metrics = result.get("metrics") or {}
    for name, value in metrics.items() if isinstance(metrics, dict) else []:
        if any(is_number(leaf) for _, leaf in iter_leaves(value)):
            tolerances.setdefault(str(name), dict(tolerances["default"]))
    out: dict[str, Any] = {"note": NOTE}
    out.update({key: result.get(key) for key in KEPT_KEYS})
    out["tolerances"] = tolerances
    return out


def result_files(stem: str) -> list[Path]:
    """Smoke results of a notebook stem: <stem>.json, or one <stem>__<run>.json per run.

    A notebook that the Makefile runs once per workload (RUNS_<stem>) writes one result per
    run; a missing result is returned as <stem>.json so that the caller reports it.
    """
    single = RESULTS_SMOKE / f"{stem}.json"
    if single.is_file() or "__" in stem:
        return [single]
    runs = sorted(RESULTS_SMOKE.glob(f"{stem}__*.json"))
    return runs or [single]


def cmd_expected(stems: list[str]) -> int:
    """Write tests/expected/<stem>.smoke.json for the given stems (default: every result)."""
    if stems:
        paths = [path for stem in stems for path in result_files(stem)]
    else:
        paths = sorted(RESULTS_SMOKE.glob("*.json"))
    if not paths:
        print(f"results: no results in {RESULTS_SMOKE.relative_to(ROOT)}/; run `make smoke` first")
        return 1
    missing = [p for p in paths if not p.is_file()]
    if missing:
        for p in missing:
            print(f"results: {p.relative_to(ROOT)} does not exist; run `make smoke` first")
        return 1
    EXPECTED.mkdir(parents=True, exist_ok=True)
    for path in paths:
        result = json.loads(path.read_text())
        if not isinstance(result.get("metrics"), dict):
            print(f"results: {path.relative_to(ROOT)} has no `metrics` mapping")
            return 1
        target = expected_path(path.stem)
        previous = json.loads(target.read_text()) if target.is_file() else None
        expected = make_expected(result, previous)
        stale = [
            p
            for p in expected["tolerances"]
            if p != "default"
            and not any(p in parent_paths(m) for m, _ in iter_leaves(result["metrics"]))
        ]
        target.write_text(json.dumps(expected, indent=2) + "\n")
        print(f"results: wrote {target.relative_to(ROOT)}")
        for p in stale:
            print(f"results:   tolerance `{p}` matches no metric any more; remove it by hand")
    print("results: review the diff (git diff tests/expected) before committing")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("expected", help="rewrite tests/expected/<stem>.smoke.json")
    exp.add_argument("stems", nargs="*", help="notebook stems (default: every smoke result)")
    args = parser.parse_args(argv)
    return cmd_expected(args.stems)


if __name__ == "__main__":
    sys.exit(main())
