"""tools/figures_readme.py: sections from the results JSON, kept when a run has none."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_TOOL = ROOT / "tools" / "figures_readme.py"
_spec = importlib.util.spec_from_file_location("_figures_tool", _TOOL)
assert _spec is not None and _spec.loader is not None
figures_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures_readme)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FIGURES", "RESULTS", "EXECUTED"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setattr(figures_readme, name, folder)
    monkeypatch.setattr(figures_readme, "ROOT", tmp_path)
    for stem in ("00_a__panel", "01_b__panel"):
        (tmp_path / "figures" / f"{stem}.png").write_bytes(b"")
    return tmp_path


def _write_result(tree: Path, stem: str, accuracy: float) -> None:
    result = {"profile": "default", "git_sha": "abc", "metrics": {"accuracy": accuracy}}
    (tree / "results" / f"{stem}.json").write_text(json.dumps(result))


def test_sections_carry_the_metrics_of_the_results(tree: Path) -> None:
    _write_result(tree, "00_a", 0.5)
    _write_result(tree, "01_b", 0.25)
    figures_readme.main()
    text = (tree / "figures" / "README.md").read_text()
    assert "## 00_a" in text and "| `accuracy` | 0.5 |" in text
    assert "## 01_b" in text and "| `accuracy` | 0.25 |" in text


def test_a_run_without_results_keeps_its_previous_section(tree: Path) -> None:
    _write_result(tree, "00_a", 0.5)
    _write_result(tree, "01_b", 0.25)
    figures_readme.main()
    (tree / "results" / "01_b.json").unlink()  # a checkout that reran only 00_a
    _write_result(tree, "00_a", 0.75)
    figures_readme.main()
    text = (tree / "figures" / "README.md").read_text()
    assert "| `accuracy` | 0.75 |" in text and "| `accuracy` | 0.5 |" not in text
    assert "| `accuracy` | 0.25 |" in text  # kept, not replaced by "no results"
    assert "_No build/results" not in text
    assert text.count("## 01_b") == 1


def test_a_new_run_without_results_says_so(tree: Path) -> None:
    figures_readme.main()
    assert "_No build/results/default/00_a.json" in (tree / "figures" / "README.md").read_text()
