"""Check the committed notebooks (run by `make lint`).

For every notebooks/*.ipynb:

* the file name is `NN_snake_slug.ipynb` (the Makefile only runs those);
* the kernelspec is `python3` / `Python 3` / `python`;
* there is exactly one cell tagged `parameters` and no papermill `injected-parameters` cell;
* the parameters cell holds literal assignments only, and every name it assigns is returned
  by `papermill.inspect_notebook()` (papermill silently drops lines it cannot parse, e.g.
  `max_batches: int = 0  # 0 = all`);
* the parameters cell declares ``profile`` and ``output_dir``, and the next code cell calls
  ``al.runs.start_run("<stem>", globals())``, which checks the parameters before any work and
  records every one of them in the results JSON;
* no code cell has outputs or an execution count;
* notebooks/params/smoke/<stem>.yaml exists, sets `profile: smoke`, and all its keys are
  parameters of the notebook; notebooks/params/paper/<stem>.yaml, where present, likewise
  with `profile: paper`.

YAML files without a matching notebook are reported too. Exits 1 on any problem.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PARAMS = NOTEBOOKS / "params"
NAME_RE = re.compile(r"^\d\d_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


class _Collect(logging.Handler):
    """Keep papermill's log messages (it reports unparsable parameter lines only there)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def source_of(cell: dict[str, Any]) -> str:
    """Return a cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def assigned_names(source: str) -> tuple[list[str], list[str]]:
    """Return (names assigned at top level, problems) for a parameters cell."""
    names: list[str] = []
    problems: list[str] = []
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return names, [f"parameters cell does not parse: {exc}"]
    for node in tree.body:
        targets: list[ast.expr]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets, value = [node.target], node.value
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            targets, value = node.targets, node.value
        else:
            problems.append(
                f"line {node.lineno}: only `name: type = literal` assignments belong in the "
                "parameters cell"
            )
            continue
        names.extend(t.id for t in targets if isinstance(t, ast.Name))
        if value is None:
            problems.append(f"line {node.lineno}: parameter without a value")
            continue
        try:
            ast.literal_eval(value)
        except ValueError:
            problems.append(
                f"line {node.lineno}: `{ast.unparse(value)}` is not a literal; derive values "
                "in the set-up cell"
            )
    return names, problems


def load_yaml(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Load a parameters YAML file; return (mapping, error)."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, f"{path.relative_to(ROOT)} is not valid YAML: {exc}"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, f"{path.relative_to(ROOT)} must be a mapping of parameter names to values"
    return data, None


def check_params_yaml(path: Path, profile: str, parameters: set[str]) -> list[str]:
    """Check one profile YAML against the notebook's parameters."""
    data, error = load_yaml(path)
    if error:
        return [error]
    assert data is not None
    rel = path.relative_to(ROOT)
    errors = [
        f"{rel}: `{key}` is not a parameter of the notebook"
        for key in sorted(data)
        if key not in parameters
    ]
    if data.get("profile") != profile:
        errors.append(f"{rel}: must set `profile: {profile}` (it routes the outputs)")
    return errors


def checks_parameters_first(cells: list[dict[str, Any]], tagged: dict[str, Any], stem: str) -> bool:
    """Whether the first code cell after the parameters cell calls ``start_run("<stem>", ...)``."""
    code = [c for c in cells if c.get("cell_type") == "code"]
    after = code[code.index(tagged) + 1 :] if tagged in code else []
    return bool(after) and f'al.runs.start_run("{stem}", globals())' in source_of(after[0])


def check_notebook(path: Path) -> list[str]:
    """Return the problems found in one notebook."""
    import papermill  # imported lazily: slow, and not needed when there are no notebooks

    stem = path.stem
    errors: list[str] = []
    if not NAME_RE.match(path.name):
        errors.append("file name must be NN_snake_slug.ipynb (two digits, lower-case slug)")
    try:
        nb = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return [f"not valid JSON: {exc}"]

    spec = nb.get("metadata", {}).get("kernelspec", {})
    if {k: spec.get(k) for k in KERNELSPEC} != KERNELSPEC:
        errors.append(f"kernelspec must be {KERNELSPEC}, found {spec or 'none'}")

    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    tagged = [
        c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in code):
        errors.append("contains a papermill `injected-parameters` cell (an executed copy?)")
    for i, cell in enumerate(code):
        if cell.get("outputs") or cell.get("execution_count") is not None:
            errors.append(f"code cell {i} has outputs or an execution count; run `make strip`")
            break

    parameters: set[str] = set()
    if len(tagged) != 1:
        errors.append(f"needs exactly one cell tagged `parameters`, found {len(tagged)}")
    elif tagged[0].get("cell_type") != "code":
        errors.append("the cell tagged `parameters` must be a code cell")
    else:
        names, problems = assigned_names(source_of(tagged[0]))
        errors.extend(problems)
        handler = _Collect()
        logger = logging.getLogger("papermill")
        logger.addHandler(handler)
        try:
            inspected = set(papermill.inspect_notebook(str(path)))
        except Exception as exc:  # papermill raises several types; report them all
            errors.append(f"papermill.inspect_notebook() failed: {type(exc).__name__}: {exc}")
        else:
            dropped = [n for n in names if n not in inspected]
            if dropped:
                hint = "; ".join(handler.messages) or "check the type annotation and comment"
                errors.append(
                    f"papermill does not see parameter(s) {', '.join(dropped)} ({hint}). "
                    "Never put `=` in the help comment"
                )
        finally:
            logger.removeHandler(handler)
        parameters = set(names)
        for required in ("profile", "output_dir"):
            if required not in parameters:
                errors.append(f"the parameters cell must declare `{required}`")
        if not checks_parameters_first(nb.get("cells", []), tagged[0], stem):
            errors.append(
                "the first code cell after the parameters cell must call "
                f'`run = al.runs.start_run("{stem}", globals())` (checks the parameters before '
                "any work and records them)"
            )

    smoke = PARAMS / "smoke" / f"{stem}.yaml"
    if smoke.is_file():
        errors.extend(check_params_yaml(smoke, "smoke", parameters))
    else:
        errors.append(f"missing {smoke.relative_to(ROOT)} (the smoke profile's parameters)")
    paper = PARAMS / "paper" / f"{stem}.yaml"
    if paper.is_file():
        errors.extend(check_params_yaml(paper, "paper", parameters))
    return errors


def main() -> int:
    """Check every notebook; print problems; return the exit code."""
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    problems: list[str] = []
    stems = {p.stem for p in notebooks}
    for profile in ("smoke", "paper"):
        for yml in sorted((PARAMS / profile).glob("*.y*ml")):
            if yml.suffix == ".yml":
                problems.append(f"{yml.relative_to(ROOT)}: use the .yaml extension")
            elif yml.stem not in stems:
                problems.append(f"{yml.relative_to(ROOT)}: no notebooks/{yml.stem}.ipynb")
    if not notebooks:
        print("check_notebooks: no notebooks/*.ipynb yet, nothing to check")
    for path in notebooks:
        errors = check_notebook(path)
        problems.extend(f"{path.relative_to(ROOT)}: {e}" for e in errors)
        if not errors:
            print(f"check_notebooks: {path.relative_to(ROOT)} ok")
    for problem in problems:
        print(f"check_notebooks: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
