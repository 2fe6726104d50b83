"""Documentation references: tools/docs_refs.py and the MkDocs hook that fails the build.

The full ``mkdocs build --strict`` runs in ``make lint`` (and ``make docs``), not here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


docs_refs = _load("_test_docs_refs", ROOT / "tools" / "docs_refs.py")

PAGE = """# Page {#page-top}

## 2.1 Programming noise {#programming-noise}

## A heading with `code` and a [link](other.md)

## Repeated

## Repeated

Text with an anchored paragraph.
{: #para-anchor }

```text
## Not a heading {#inside-fence}
```
"""


def _tree(root: Path, source: str) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "page.md").write_text(PAGE, encoding="utf-8")
    (root / "analoglib").mkdir()
    (root / "analoglib" / "mod.py").write_text(source, encoding="utf-8")
    return root


def test_page_anchors_explicit_and_generated(tmp_path: Path) -> None:
    root = _tree(tmp_path, "")
    anchors = docs_refs.page_anchors(root / "docs" / "page.md")
    assert {"page-top", "programming-noise", "para-anchor"} <= anchors
    assert {"a-heading-with-code-and-a-link", "repeated", "repeated_1"} <= anchors
    assert "inside-fence" not in anchors
    assert "21-programming-noise" not in anchors  # an explicit id replaces the generated one


def test_good_references_pass(tmp_path: Path) -> None:
    source = (
        '"""See docs/page.md#programming-noise and docs/page.md#repeated_1.\n\n'
        "Also docs/page.md (whole page), docs/page.md#para-anchor.\n"
        '"""\n'
        "# docs/page.md#a-heading-with-code-and-a-link, then a period: docs/page.md#page-top.\n"
    )
    root = _tree(tmp_path, source)
    refs = docs_refs.find_references(root)
    assert [r.target for r in refs] == [
        "docs/page.md#programming-noise",
        "docs/page.md#repeated_1",
        "docs/page.md",
        "docs/page.md#para-anchor",
        "docs/page.md#a-heading-with-code-and-a-link",
        "docs/page.md#page-top",
    ]
    assert docs_refs.check_references(root) == []


def test_broken_anchor_and_missing_page_are_reported(tmp_path: Path) -> None:
    source = "# docs/page.md#no-such-anchor\n# docs/missing.md#drift\n# docs/page.md#page-top\n"
    root = _tree(tmp_path, source)
    broken = docs_refs.check_references(root)
    assert [(b.reference.line, b.reference.target, b.reason) for b in broken] == [
        (1, "docs/page.md#no-such-anchor", "missing anchor"),
        (2, "docs/missing.md#drift", "missing page"),
    ]
    assert "analoglib/mod.py:1: docs/page.md#no-such-anchor (missing anchor)" in (
        docs_refs.format_broken(broken)
    )


def test_only_the_docs_pattern_counts(tmp_path: Path) -> None:
    source = (
        "# ``aimc-model.md`` section 5.2; ``offline-assets.md`` section 4; "
        "conventions section 8\n"
        "# mkdocs/page.md#x, site/docs/page.md#x, docs/<page>.md#<anchor>\n"
    )
    root = _tree(tmp_path, source)
    assert docs_refs.find_references(root) == []


def test_notebook_references_are_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, "")
    (root / "notebooks").mkdir()
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["See docs/page.md#gone.\n"]}
    (root / "notebooks" / "00_x.ipynb").write_text(json.dumps({"cells": [cell]}, indent=1))
    broken = docs_refs.check_references(root)
    assert [(b.reference.source, b.reference.target) for b in broken] == [
        ("notebooks/00_x.ipynb", "docs/page.md#gone")
    ]


def test_repository_references_resolve() -> None:
    """Every docs/<page>.md[#anchor] in analoglib, notebooks, README, benchmarks, tools."""
    broken = docs_refs.check_references(ROOT)
    assert broken == [], "broken docs references:\n" + docs_refs.format_broken(broken)


def test_citation_map_targets_resolve() -> None:
    """docs/_citations.json (old section number -> page#anchor) points at existing anchors."""
    citations = json.loads((ROOT / "docs" / "_citations.json").read_text(encoding="utf-8"))
    assert citations, "docs/_citations.json is empty"
    missing = []
    for key, target in citations.items():
        page, _, anchor = target.partition("#")
        path = ROOT / page
        if not path.is_file() or (anchor and anchor not in docs_refs.page_anchors(path)):
            missing.append(f"{key}: {target}")
    assert missing == []


@pytest.fixture
def hooks() -> ModuleType:
    pytest.importorskip("mkdocs")
    return _load("_test_mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py")


def _config(root: Path) -> object:
    from mkdocs.config import load_config

    (root / "mkdocs.yml").write_text("site_name: test\ndocs_dir: docs\n", encoding="utf-8")
    return load_config(config_file=str(root / "mkdocs.yml"))


def test_hook_fails_the_build_on_a_broken_reference(tmp_path: Path, hooks: ModuleType) -> None:
    from mkdocs.exceptions import PluginError

    root = _tree(tmp_path, "# docs/page.md#no-such-anchor\n# docs/gone.md\n")
    with pytest.raises(PluginError) as error:
        hooks.on_pre_build(_config(root))
    message = str(error.value)
    assert "2 broken documentation reference(s)" in message
    assert "analoglib/mod.py:1: docs/page.md#no-such-anchor (missing anchor)" in message
    assert "analoglib/mod.py:2: docs/gone.md (missing page)" in message


def test_hook_passes_a_good_tree(tmp_path: Path, hooks: ModuleType) -> None:
    root = _tree(tmp_path, "# docs/page.md#programming-noise\n")
    hooks.on_pre_build(_config(root))


def test_api_walk_skips_private_and_deprecated_modules(tmp_path: Path, hooks: ModuleType) -> None:
    package = tmp_path / "analoglib"
    (package / "sub").mkdir(parents=True)
    (package / "_private").mkdir()
    files = {
        "__init__.py": '"""Top."""\nfrom analoglib.kept import f\n\nVALUE = 1\n',
        "kept.py": '"""Kept."""\n\ndef f() -> None:\n    """F."""\n',
        "_hidden.py": '"""Hidden."""\n',
        "shim.py": '"""Moved."""\n\n__deprecated__ = True\n',
        "sub/__init__.py": '"""Sub."""\n',
        "sub/leaf.py": '"""Leaf."""\n',
        "_private/__init__.py": '"""Private."""\n',
        "_private/inner.py": '"""Inner."""\n',
    }
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    modules = hooks.api_modules(tmp_path)
    assert [m.name for m in modules] == [
        "analoglib",
        "analoglib.kept",
        "analoglib.sub",
        "analoglib.sub.leaf",
    ]
    top = modules[0]
    assert top.is_package and top.members == ("VALUE",) and top.page == "api/analoglib/index.md"
    assert modules[3].page == "api/analoglib/sub/leaf.md"


def test_notebook_pages_prefer_executed_copies(tmp_path: Path, hooks: ModuleType) -> None:
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 02 · Title\n"]}]}
    (tmp_path / "notebooks").mkdir()
    executed = tmp_path / "build" / "executed"
    executed.mkdir(parents=True)
    for path in (
        tmp_path / "notebooks" / "00_a.ipynb",
        tmp_path / "notebooks" / "02_b.ipynb",
        tmp_path / "notebooks" / "scratch.ipynb",  # not NN_slug: no page
        executed / "02_b__cnn.ipynb",
        executed / "02_b__rnn.ipynb",
    ):
        path.write_text(json.dumps(notebook), encoding="utf-8")
    pages = hooks.notebook_pages(tmp_path)
    assert [(p.name, p.executed, p.page) for p in pages] == [
        ("00_a", False, "notebooks/00_a.ipynb"),
        ("02_b__cnn", True, "notebooks/02_b__cnn.ipynb"),
        ("02_b__rnn", True, "notebooks/02_b__rnn.ipynb"),
    ]
    assert pages[1].title == "02 · Title (cnn)"


def test_rendered_docs_references_become_links(hooks: ModuleType) -> None:
    html = "see <code>docs/model.md#drift</code> and <code>docs/index.md</code>"
    linked = hooks.docs_refs_to_links(html, "api/analoglib/noise/modifier/")
    assert '<a href="../../../../model/#drift"><code>docs/model.md#drift</code></a>' in linked
    assert '<a href="../../../../"><code>docs/index.md</code></a>' in linked
    assert hooks.docs_refs_to_links(html, "").count("<a href=") == 2
