"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks: [tools/mkdocs_hooks.py]``).

At build time, without writing anything into ``docs/``:

* **References.** Every ``docs/<page>.md#<anchor>`` reference in the code, notebooks, README,
  benchmarks and tools must resolve (``tools/docs_refs.py``); otherwise the build fails with a
  ``PluginError`` that lists each broken one (:func:`on_pre_build`).
* **API pages.** The package ``analoglib`` is walked and one page per public module is
  generated under ``api/`` (a mkdocstrings ``:::`` block). Private modules (a name part with a
  leading underscore) and deprecated shims (a module-level ``__deprecated__ = True``) are
  skipped, so modules that appear or move are picked up without editing a list.
* **Notebooks.** ``notebooks/NN_*.ipynb`` are added as pages rendered by mkdocs-jupyter
  (never executed): the executed default-profile copy ``build/executed/<stem>.ipynb`` (or, for
  a notebook run once per workload, every ``build/executed/<stem>__<workload>.ipynb``) when it
  exists, else the stripped source.
* **Figures.** ``figures/*.png`` are copied into the site and shown on a generated page.
* **Sphinx roles.** Docstrings use roles such as ``:func:`program```, which mkdocstrings does
  not know; on the API pages they become optional cross-references (a link where the target
  is documented, plain code otherwise) instead of showing the role as text.

The navigation entries of these generated pages are appended to the ``nav`` of
``mkdocs.yml`` in :func:`on_config`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.analoglib")

PACKAGE = "analoglib"
API_DIR = "api"
NOTEBOOK_DIR = "notebooks"
FIGURE_DIR = "figures"
_NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


def _load_docs_refs() -> Any:
    """Import ``tools/docs_refs.py`` by path (``tools/`` is not a package)."""
    name = "analoglib_docs_refs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("docs_refs.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _root(config: Any) -> Path:
    """Repository root: the folder of ``mkdocs.yml``."""
    config_file = config["config_file_path"]
    if config_file:
        return Path(config_file).resolve().parent
    return Path(config["docs_dir"]).resolve().parent


# -- API pages ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiModule:
    """One documented module of the package.

    Attributes:
        name: Dotted module name.
        path: Source file.
        is_package: True for a package (``__init__.py``).
        members: Names defined in the module itself (not imported), in source order.
    """

    name: str
    path: Path
    is_package: bool
    members: tuple[str, ...]

    @property
    def page(self) -> str:
        """Site path of the generated page."""
        parts = self.name.split(".")
        if self.is_package:
            return "/".join([API_DIR, *parts, "index.md"])
        return "/".join([API_DIR, *parts]) + ".md"


def _is_deprecated(tree: ast.Module) -> bool:
    """True when the module assigns ``__deprecated__ = True`` at module level."""
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__deprecated__":
                if isinstance(value, ast.Constant) and value.value is True:
                    return True
    return False


def _local_members(tree: ast.Module) -> tuple[str, ...]:
    """Public names defined (not imported) at module level, in source order."""
    names: list[str] = []
    for node in tree.body:
        found: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found = [node.name]
        elif isinstance(node, ast.Assign):
            found = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found = [node.target.id]
        names += [n for n in found if not n.startswith("_") and n not in names]
    return tuple(names)


def api_modules(root: Path, package: str = PACKAGE) -> list[ApiModule]:
    """Public, non-deprecated modules of ``package`` under ``root``, packages first per folder.

    Args:
        root: Repository root (holds the package folder).
        package: Top-level package name.

    Returns:
        The modules, sorted by dotted name.
    """
    modules = []
    base = root / package
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue  # private module, or inside a private package
        folders = [root.joinpath(*parts[:i]) for i in range(1, len(parts))]
        if not all((folder / "__init__.py").is_file() for folder in folders):
            continue  # a folder above is not a package: not importable as part of it
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if _is_deprecated(tree):
            continue
        modules.append(ApiModule(".".join(parts), path, is_package, _local_members(tree)))
    return sorted(modules, key=lambda m: m.name)


def _api_page(module: ApiModule, modules: list[ApiModule]) -> str:
    """Markdown of one API page: the mkdocstrings block, plus the submodules of a package."""
    lines = [f"# `{module.name}`", "", f"::: {module.name}", "    options:"]
    lines.append("      show_root_heading: false")
    lines.append("      show_root_toc_entry: false")
    if module.is_package:
        # Re-exported names are documented on their own module's page: list local names only.
        members = json.dumps(list(module.members))
        lines.append(f"      members: {members}")
    children = [
        m
        for m in modules
        if m.name.rsplit(".", 1)[0] == module.name and m.name != module.name and module.is_package
    ]
    if children:
        lines += ["", "## Submodules", ""]
        here = Path(module.page).parent
        for child in children:
            link = Path(child.page).relative_to(here).as_posix()
            summary = _first_docstring_line(child.path)
            lines.append(f"- [`{child.name}`]({link})" + (f": {summary}" if summary else ""))
    return "\n".join(lines) + "\n"


def _first_docstring_line(path: Path) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _api_index(modules: list[ApiModule]) -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings of the package at build time: one page per public "
        "module (private modules and deprecated shims are left out).",
        "",
        "| module | summary |",
        "|---|---|",
    ]
    for module in modules:
        link = Path(module.page).relative_to(API_DIR).as_posix()
        summary = _first_docstring_line(module.path).replace("|", "\\|")
        lines.append(f"| [`{module.name}`]({link}) | {summary} |")
    return "\n".join(lines) + "\n"


def _api_nav(modules: list[ApiModule]) -> list[Any]:
    """Nested nav: a package is a section whose first page is its index."""
    by_name = {m.name: m for m in modules}

    def section(package: ApiModule) -> list[Any]:
        entries: list[Any] = [package.page]
        for module in modules:
            if module.name.rsplit(".", 1)[0] != package.name or module.name == package.name:
                continue
            if module.is_package:
                entries.append({module.name: section(module)})
            else:
                entries.append({module.name: module.page})
        return entries

    top = by_name.get(PACKAGE)
    entries: list[Any] = [f"{API_DIR}/index.md"]
    if top is not None:
        entries.append({PACKAGE: section(top)})
    return entries


# -- notebooks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NotebookPage:
    """One notebook page of the site.

    Attributes:
        stem: Notebook stem (``NN_slug``).
        name: Run name (``stem`` or ``stem__workload``), the page's file name.
        source: The notebook file rendered (executed copy or stripped source).
        executed: True when ``source`` is an executed copy.
    """

    stem: str
    name: str
    source: Path
    executed: bool

    @property
    def page(self) -> str:
        """Site path of the page."""
        return f"{NOTEBOOK_DIR}/{self.name}.ipynb"

    @property
    def title(self) -> str:
        """First level-1 heading of the notebook (file name if none), plus the workload."""
        title = self.stem
        try:
            notebook = json.loads(self.source.read_text(encoding="utf-8"))
            for cell in notebook.get("cells", []):
                if cell.get("cell_type") != "markdown":
                    continue
                for line in "".join(cell.get("source", [])).splitlines():
                    if line.startswith("# "):
                        title = line[2:].strip()
                        break
                else:
                    continue
                break
        except (OSError, ValueError):
            pass
        workload = self.name[len(self.stem) + 2 :] if self.name != self.stem else ""
        title = f"{self.stem[:2]} {title}" if not title.startswith(self.stem[:2]) else title
        return f"{title} ({workload})" if workload else title


def notebook_pages(root: Path) -> list[NotebookPage]:
    """The notebook pages: executed default-profile copies where they exist, else the sources."""
    pages = []
    executed = root / "build" / "executed"
    for source in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")):
        stem = source.stem
        if not _NOTEBOOK_NAME.match(stem):
            continue
        runs = [executed / f"{stem}.ipynb"] if (executed / f"{stem}.ipynb").is_file() else []
        runs += sorted(executed.glob(f"{stem}__*.ipynb"))
        if runs:
            pages += [NotebookPage(stem, run.stem, run, True) for run in runs]
        else:
            pages.append(NotebookPage(stem, stem, source, False))
    return pages


# -- figures ------------------------------------------------------------------------------------
def _figures(root: Path) -> list[Path]:
    return sorted((root / FIGURE_DIR).glob("*.png"))


def _figures_page(figures: list[Path]) -> str:
    lines = [
        "# Figures",
        "",
        "The committed figures of the default profile (`make figures`), one section per "
        "notebook run; `figures/README.md` in the repository lists their provenance and "
        "headline numbers; there, each figure also exists as a PDF.",
    ]
    current = None
    for figure in figures:
        run, _, panel = figure.stem.rpartition("__")
        if run != current:
            lines += ["", f"## `{run}`", ""]
            current = run
        lines += [f"![{figure.stem}]({figure.name})", "", f"*{panel}*", ""]
    if not figures:
        lines += ["", "No figures yet: run `make figures`."]
    return "\n".join(lines) + "\n"


# -- Sphinx roles in docstrings --------------------------------------------------------------
_ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):<code>(~?)(\.?)([\w.]+)</code>"
)


def _page_module(src_uri: str) -> str | None:
    """Dotted module name of a generated API page (None for other pages)."""
    if not src_uri.startswith(f"{API_DIR}/") or src_uri == f"{API_DIR}/index.md":
        return None
    parts = src_uri[len(API_DIR) + 1 : -len(".md")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "index" else parts)


def sphinx_roles_to_autorefs(html: str, module: str | None) -> str:
    """Turn ``:role:<code>target</code>`` into an optional autorefs cross-reference.

    ``~`` shows only the last name; a leading ``.`` or a bare name is resolved against
    ``module``; a name starting with the package name is taken as it is.
    """

    def replace(match: re.Match[str]) -> str:
        tilde, _, target = match.groups()
        text = target.rsplit(".", 1)[-1] if tilde else target
        if target.split(".", 1)[0] == PACKAGE or module is None:
            identifier = target
        else:
            identifier = f"{module}.{target}"  # a leading dot is relative to the module too
        return f'<autoref identifier="{identifier}" optional><code>{text}</code></autoref>'

    return _ROLE.sub(replace, html)


#: A docstring's reference to a docs page, as rendered: ``<code>docs/model.md#drift</code>``.
_DOCS_CODE = re.compile(r"<code>docs/([\w./-]+)\.md(#[\w-]+)?</code>")


def docs_refs_to_links(html: str, page_url: str) -> str:
    """Make every rendered ``docs/<page>.md#<anchor>`` reference a link to that page."""
    depth = page_url.strip("/").count("/") + 1 if page_url.strip("/") else 0

    def replace(match: re.Match[str]) -> str:
        page, anchor = match.group(1), match.group(2) or ""
        target = "" if page == "index" else f"{page}/"
        href = "../" * depth + target + anchor
        return f'<a href="{href}">{match.group(0)}</a>'

    return _DOCS_CODE.sub(replace, html)


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Render Sphinx roles of the API pages as cross-references, docs references as links."""
    module = _page_module(page.file.src_uri)
    if module is not None:
        html = sphinx_roles_to_autorefs(html, module)
    return docs_refs_to_links(html, page.url)


# -- state of one build -------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def on_config(config: Any) -> Any:
    """Walk the package and the notebooks; append their pages to the nav."""
    root = _root(config)
    modules = api_modules(root)
    notebooks = notebook_pages(root)
    figures = _figures(root)
    _STATE.update(root=root, modules=modules, notebooks=notebooks, figures=figures)
    nav = config["nav"]
    if nav is not None:
        nav.append({"Notebooks": [{nb.title: nb.page} for nb in notebooks]})
        nav.append({"Figures": f"{FIGURE_DIR}/index.md"})
        nav.append({"API reference": _api_nav(modules)})
    return config


def on_pre_build(config: Any) -> None:
    """Fail the build on any broken ``docs/<page>.md#<anchor>`` reference in the sources.

    Raises:
        PluginError: Listing every broken reference (file, line, target, reason).
    """
    docs_refs = _load_docs_refs()
    broken = docs_refs.check_references(_root(config), Path(config["docs_dir"]))
    if broken:
        raise PluginError(
            f"{len(broken)} broken documentation reference(s) (page or anchor missing under "
            f"docs/):\n{docs_refs.format_broken(broken)}"
        )


@event_priority(100)  # before mkdocs-jupyter wraps the notebook files
def on_files(files: Files, config: Any) -> Files:
    """Add the generated API pages, the notebook pages and the figures."""
    if "modules" not in _STATE:
        on_config(config)
    modules: list[ApiModule] = _STATE["modules"]
    files.append(File.generated(config, f"{API_DIR}/index.md", content=_api_index(modules)))
    for module in modules:
        files.append(File.generated(config, module.page, content=_api_page(module, modules)))
    # Notebooks are staged under build/ as real files: mkdocs-jupyter wraps each page's File
    # and reads its source through src_dir, which a File.generated(abs_src_path=...) lacks.
    staging = _STATE["root"] / "build" / ".cache" / "docs-notebooks"
    for notebook in _STATE["notebooks"]:
        target = staging / notebook.page
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook.source, target)
        files.append(
            File(
                notebook.page,
                src_dir=str(staging),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    figures: list[Path] = _STATE["figures"]
    files.append(File.generated(config, f"{FIGURE_DIR}/index.md", content=_figures_page(figures)))
    for figure in figures:
        files.append(
            File.generated(config, f"{FIGURE_DIR}/{figure.name}", abs_src_path=str(figure))
        )
    return files
