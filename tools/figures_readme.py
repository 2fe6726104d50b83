"""Write figures/README.md: each committed figure with its provenance (run by `make figures`).

Figure files are named `NN_slug__panel.{pdf,png}` (`NN_slug` is the notebook stem) or
`NN_slug__run__panel.{pdf,png}` for a notebook run once per workload (`NN_slug__run` names the
run: its results JSON and executed copy). For each run the provenance comes from
build/results/default/<run>.json (profile, data_source, git_sha, versions, headline metrics)
and, where present, from build/executed/<run>.ipynb (metadata.papermill.parameters: the
parameters papermill injected, empty for a plain default run). A run without a results JSON
here (a checkout that ran only some notebooks) keeps its section of the existing README, so
regenerating after one notebook does not erase the provenance of the others. The output is
sorted and has no timestamps, so an unchanged run leaves the file unchanged.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
EXECUTED = ROOT / "build" / "executed"
RESULTS = ROOT / "build" / "results" / "default"
MAX_LIST = 8  # longer lists of numbers are shortened in the table


def fmt(value: Any) -> str:
    """Format a metric value: 4 significant digits, lists inline."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        items = [fmt(v) for v in value[:MAX_LIST]]
        more = f", … ({len(value)} values)" if len(value) > MAX_LIST else ""
        return "[" + ", ".join(items) + more + "]"
    return str(value)


def flatten(metrics: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested dicts to (dotted key, formatted value); lists of scalars stay inline."""
    if isinstance(metrics, dict):
        rows: list[tuple[str, str]] = []
        for key, value in metrics.items():
            rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(metrics, (list, tuple)) and any(isinstance(v, (dict, list)) for v in metrics):
        rows = []
        for i, value in enumerate(metrics):
            rows += flatten(value, f"{prefix}[{i}]")
        return rows
    return [(prefix, fmt(metrics))]


def load_json(path: Path) -> dict[str, Any]:
    """Return the JSON object in `path`, or {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def provenance(stem: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (injected papermill parameters, results JSON) for a notebook stem."""
    executed = load_json(EXECUTED / f"{stem}.ipynb")
    injected = executed.get("metadata", {}).get("papermill", {}).get("parameters") or {}
    return injected, load_json(RESULTS / f"{stem}.json")


def section(stem: str, pngs: list[Path]) -> list[str]:
    """Return the README lines for one notebook."""
    injected, result = provenance(stem)
    notebook = stem.split("__", 1)[0]
    params = {**(result.get("parameters") or {}), **injected}

    def pick(key: str) -> str:
        value = result.get(key, params.get(key))
        return "unknown" if value in (None, "") else str(value)

    sha = pick("git_sha")
    versions = result.get("versions") or {}
    lines = [
        f"## {stem}",
        "",
        f"Notebook: [`notebooks/{notebook}.ipynb`](../notebooks/{notebook}.ipynb) · "
        f"profile: `{pick('profile')}` · data_source: `{pick('data_source')}` · "
        f"git: `{sha[:12]}`" + (f" · device: `{result['device']}`" if result.get("device") else ""),
    ]
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    if injected:
        lines += [
            "",
            "Injected parameters: " + ", ".join(f"`{k}={v!r}`" for k, v in injected.items()),
        ]
    if not result:
        lines += ["", f"_No build/results/default/{stem}.json: run `make figures`._"]
    lines += ["", "| figure | files |", "|---|---|"]
    for png in pngs:
        panel = png.stem.rsplit("__", 1)[1] if "__" in png.stem else png.stem
        pdf = png.with_suffix(".pdf")
        files = f"[png]({png.name})" + (f" · [pdf]({pdf.name})" if pdf.is_file() else "")
        lines.append(f"| {panel} | {files} |")
    rows = flatten(result.get("metrics") or {})
    if rows:
        lines += ["", "Headline metrics:", "", "| metric | value |", "|---|---|"]
        lines += [f"| `{name}` | {value} |" for name, value in rows]
    lines.append("")
    for png in pngs:
        lines += [f"![{png.stem}]({png.name})", ""]
    return lines


def existing_sections(readme: Path) -> dict[str, list[str]]:
    """Return the lines of each `## <stem>` section of an existing README, by stem."""
    if not readme.is_file():
        return {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in readme.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        if current is not None:
            current.append(line)
    return {stem: lines + [""] if lines[-1] else lines for stem, lines in sections.items()}


def main() -> int:
    """Regenerate figures/README.md."""
    out = FIGURES / "README.md"
    previous = existing_sections(out)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for png in sorted(FIGURES.glob("*.png")):
        by_stem[png.stem.rsplit("__", 1)[0]].append(png)  # the run: NN_slug[__run]
    lines = [
        "# Figures",
        "",
        "Generated by `make figures` (`tools/figures_readme.py`) from the default-profile runs;",
        "do not edit by hand. Each figure is `NN_slug__panel.{pdf,png}`, written by",
        "`al.plotting.savefig` from the notebook `notebooks/NN_slug.ipynb`.",
        "",
    ]
    if not by_stem:
        lines += ["No figures yet: run `make figures`.", ""]
    for stem in sorted(by_stem):
        if stem in previous and not (RESULTS / f"{stem}.json").is_file():
            lines += previous[stem]
        else:
            lines += section(stem, by_stem[stem])
    FIGURES.mkdir(exist_ok=True)
    out.write_text("\n".join(lines).rstrip("\n") + "\n")
    n = sum(len(v) for v in by_stem.values())
    print(f"figures_readme: wrote {out.relative_to(ROOT)} ({n} figures, {len(by_stem)} notebooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
