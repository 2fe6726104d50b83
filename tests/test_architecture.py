"""The package's layering: a module imports only from its own layer or lower ones.

The rule, imports inside functions included (read from the source, not by importing):

====  ============================================================================
0     config, random, utils, cache, parallel (and the private helpers)
1     presets, noise, devices, tiles, plotting
2     nn
3     inference, summary, metrics, optim
4     training, data, models
5     workloads, nas
6     studies
====  ============================================================================

``analoglib/__init__.py`` is the facade and may import anything; deprecated shim modules
(``__deprecated__ = True``) re-export a moved module and are exempt too. Also: every public
top-level function and class of a module is listed in its ``__all__``, and every deprecated
alias warns and returns the object of its new home.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import analoglib

PACKAGE = Path(analoglib.__file__).resolve().parent

LAYERS: dict[str, int] = {
    "_deprecation": 0,
    "_version": 0,
    "cache": 0,
    "config": 0,
    "parallel": 0,
    "random": 0,
    "utils": 0,
    "devices": 1,
    "noise": 1,
    "plotting": 1,
    "presets": 1,
    "runs": 1,
    "tiles": 1,
    "nn": 2,
    "inference": 3,
    "metrics": 3,
    "optim": 3,
    "summary": 3,
    "data": 4,
    "models": 4,
    "training": 4,
    "workloads": 5,
    "nas": 5,
    "pipeline": 5,
    "studies": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str | None:
    """The layer key of ``analoglib.<top>...`` (None for the facade ``analoglib`` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "analoglib" else None


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``analoglib`` module imported anywhere in ``tree`` (line, absolute name)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("analoglib")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "analoglib":  # `from analoglib import sub`: each name is a module
                found += [(node.lineno, f"analoglib.{a.name}") for a in node.names]
            elif name.startswith("analoglib"):
                found.append((node.lineno, name))
    return found


def _sources() -> list[tuple[Path, str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        out.append((path, _module_name(path), tree))
    return out


def _is_deprecated_shim(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__deprecated__" for t in node.targets
        ):
            return True
    return False


def upward_imports(sources: list[tuple[Path, str, ast.Module]]) -> list[str]:
    """Every import of a higher layer, as ``file:line: module (layer a) -> target (layer b)``."""
    errors = []
    for path, module, tree in sources:
        top = _top(module)
        if top is None or _is_deprecated_shim(tree):
            continue
        if top not in LAYERS:
            errors.append(f"{path}: module {module} has no layer; add {top!r} to LAYERS")
            continue
        for line, target in _imports(tree, module, path.name == "__init__.py"):
            target_top = _top(target)
            if target_top is None:
                errors.append(f"{path}:{line}: {module} imports the facade analoglib")
            elif LAYERS.get(target_top, 99) > LAYERS[top]:
                errors.append(
                    f"{path}:{line}: {module} (layer {LAYERS[top]}) imports {target} "
                    f"(layer {LAYERS.get(target_top)})"
                )
    return errors


def test_imports_only_go_downward() -> None:
    errors = upward_imports(_sources())
    assert not errors, "upward imports:\n" + "\n".join(errors)


def test_the_layering_check_catches_an_upward_import_inside_a_function() -> None:
    injected = ast.parse("def f():\n    from analoglib.studies import hwa_retraining\n")
    relative = ast.parse("from ..workloads import train_fp\n")
    sources = [
        (PACKAGE / "nn" / "linear.py", "analoglib.nn.linear", injected),
        (PACKAGE / "training" / "loops.py", "analoglib.training.loops", relative),
    ]
    errors = upward_imports(sources)
    assert len(errors) == 2
    assert "analoglib.nn.linear (layer 2) imports analoglib.studies (layer 6)" in errors[0]
    assert "imports analoglib.workloads (layer 5)" in errors[1]


def test_every_public_def_is_in_all() -> None:
    missing = []
    for _, module, tree in _sources():
        if _is_deprecated_shim(tree):
            continue
        public = [
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and not node.name.startswith("_")
        ]
        if not public:
            continue
        exported = set(getattr(importlib.import_module(module), "__all__", ()))
        missing += [f"{module}.{name}" for name in public if name not in exported]
    assert not missing, "public but not in __all__: " + ", ".join(missing)


def test_every_name_in_all_exists() -> None:
    for _, module, tree in _sources():
        if _is_deprecated_shim(tree):
            continue
        mod = importlib.import_module(module)
        absent = [n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)]
        assert not absent, f"{module}.__all__ names {absent}, which do not exist"


#: Every deprecated alias: (old module, old name) -> (new module, new name or None for a module).
MOVED: dict[tuple[str, str], tuple[str, str | None]] = {
    ("analoglib", "sweeps"): ("analoglib.studies.nonideality_sensitivity", None),
    ("analoglib.optim", "study"): ("analoglib.studies.glue_post_training", None),
    ("analoglib.optim.study", "summary_metrics"): (
        "analoglib.studies.glue_post_training",
        "results_metrics",
    ),
    ("analoglib.workloads", "atomic_save"): ("analoglib.cache", "atomic_save"),
    ("analoglib.workloads.base", "atomic_save"): ("analoglib.cache", "atomic_save"),
    ("analoglib.workloads.base", "train_fp"): ("analoglib.workloads.train", "train_fp"),
    ("analoglib.workloads.base", "cached_metrics"): (
        "analoglib.workloads.train",
        "cached_metrics",
    ),
    **{
        ("analoglib.plotting", name): ("analoglib.studies.nonideality_sensitivity", name)
        for name in ("plot_sweep_a_star", "plot_a_star_vs_mvm_error", "plot_tolerance_heatmap")
    },
    ("analoglib.plotting", "plot_configuration_scores"): (
        "analoglib.studies.glue_post_training",
        "plot_configuration_scores",
    ),
    **{
        (old, name): ("analoglib.studies.hwa_retraining", name)
        for old in ("analoglib.training", "analoglib.training.hwa")
        for name in (
            "HWA_PROFILES",
            "PUBLISHED_RASCH_2023",
            "compare_with_published",
            "evaluate_variants",
            "hwa_recipe",
            "normalized_accuracy_table",
        )
    },
    **{
        (old, "summary_metrics"): ("analoglib.studies.hwa_retraining", "results_metrics")
        for old in ("analoglib.training", "analoglib.training.hwa")
    },
    **{
        (old, name): (new, name)
        for old, new in (
            ("analoglib.training", "analoglib.workloads"),
            ("analoglib.training.hwa", "analoglib.workloads"),
        )
        for name in ("train_hwa", "hwa_cache_path")
    },
}


@pytest.mark.parametrize(
    ("old", "new"), list(MOVED.items()), ids=lambda v: ".".join(filter(None, v))
)
def test_deprecated_alias_warns_and_is_the_new_object(
    old: tuple[str, str], new: tuple[str, str | None]
) -> None:
    old_module, old_name = old
    with pytest.warns(DeprecationWarning, match=new[0]):
        value = getattr(importlib.import_module(old_module), old_name)
    home = importlib.import_module(new[0])
    assert value is (home if new[1] is None else getattr(home, new[1]))


@pytest.mark.parametrize(
    ("shim", "new"),
    [
        ("analoglib.sweeps", "analoglib.studies.nonideality_sensitivity"),
        ("analoglib.optim.study", "analoglib.studies.glue_post_training"),
    ],
)
def test_deprecated_modules_warn_and_reexport_the_new_names(shim: str, new: str) -> None:
    import sys

    sys.modules.pop(shim, None)
    with pytest.warns(DeprecationWarning, match=new):
        old = importlib.import_module(shim)
    home = importlib.import_module(new)
    assert old.__all__ == home.__all__
    for name in home.__all__:
        assert getattr(old, name) is getattr(home, name)


def test_importing_analoglib_imports_nothing_deprecated() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import analoglib"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_unknown_names_still_raise_attribute_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            analoglib.training.no_such_name  # noqa: B018
