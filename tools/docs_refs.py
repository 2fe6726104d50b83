"""Check references to the documentation pages (``docs/<page>.md#<anchor>``) in the sources.

Code, notebooks and the README cite the model reference and the other pages under ``docs/`` as
``docs/model.md#programming-noise`` (or ``docs/data.md`` without an anchor). This module finds
every such reference and checks that the page exists and that the anchor is defined in it:
an explicit id (``## Drift {#drift}`` with the attr_list extension, or an HTML ``id="..."``) or
the id that MkDocs' table of contents generates from a heading's text.

Used by the MkDocs hook (``tools/mkdocs_hooks.py``), which fails the build on a broken
reference, and by ``tests/test_docs.py``. Run it directly to list the broken references::

    python tools/docs_refs.py [ROOT]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "BrokenReference",
    "Reference",
    "SOURCE_GLOBS",
    "check_references",
    "find_references",
    "format_broken",
    "page_anchors",
]

#: Files scanned for references, relative to the repository root.
SOURCE_GLOBS: tuple[str, ...] = (
    "analoglib/**/*.py",
    "notebooks/*.ipynb",
    "README.md",
    "benchmarks/**/*",
    "tools/**/*",
)

# docs/<path>.md with an optional #anchor. The look-behind keeps "mkdocs/x.md" or "site/docs/"
# out; the path and anchor character classes keep placeholders such as "<page>" out, and an
# anchor never ends in punctuation (so "see docs/model.md#drift." cites "drift").
_REFERENCE = re.compile(
    r"(?<![\w./-])docs/(?P<path>[A-Za-z0-9_][A-Za-z0-9_./-]*?\.md)"
    r"(?:#(?P<anchor>[A-Za-z0-9_-]+(?:[.:][A-Za-z0-9_-]+)*))?(?![A-Za-z0-9_])"
)
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
_ATTR_ID = re.compile(r"\{:?\s*[^}]*?#(?P<id>[A-Za-z0-9_:.-]+)[^}]*\}")
_HTML_ID = re.compile(r"""\bid\s*=\s*["'](?P<id>[^"']+)["']""")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_SKIP_SUFFIXES = {".png", ".pdf", ".jpg", ".gz", ".pt", ".pyc", ".so", ".zip"}


@dataclass(frozen=True)
class Reference:
    """One ``docs/<page>.md[#anchor]`` reference found in a source file.

    Attributes:
        source: File that holds the reference (relative to the root when possible).
        line: 1-based line number in that file.
        page: The page path as written, relative to the repository root (``docs/...md``).
        anchor: The anchor, or ``None`` for a reference to the whole page.
    """

    source: str
    line: int
    page: str
    anchor: str | None

    @property
    def target(self) -> str:
        """The reference as written: ``docs/<page>.md`` or ``docs/<page>.md#<anchor>``."""
        return self.page + (f"#{self.anchor}" if self.anchor else "")


@dataclass(frozen=True)
class BrokenReference:
    """A reference whose page or anchor does not exist.

    Attributes:
        reference: The reference.
        reason: ``"missing page"`` or ``"missing anchor"``.
    """

    reference: Reference
    reason: str

    def __str__(self) -> str:
        ref = self.reference
        return f"{ref.source}:{ref.line}: {ref.target} ({self.reason})"


def _source_files(root: Path, globs: Iterable[str]) -> Iterator[Path]:
    seen: set[Path] = set()
    for pattern in globs:
        for path in sorted(root.glob(pattern)):
            if path in seen or not path.is_file() or path.suffix in _SKIP_SUFFIXES:
                continue
            if "__pycache__" in path.parts or ".ipynb_checkpoints" in path.parts:
                continue
            seen.add(path)
            yield path


def find_references(root: Path, globs: Iterable[str] = SOURCE_GLOBS) -> list[Reference]:
    """Every ``docs/<page>.md[#anchor]`` reference in the source files under ``root``.

    Args:
        root: Repository root.
        globs: File patterns relative to ``root`` (default :data:`SOURCE_GLOBS`).

    Returns:
        The references in file order (notebooks are scanned as their raw JSON text).
    """
    root = Path(root)
    references = []
    for path in _source_files(root, globs):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        relative = path.relative_to(root).as_posix()
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _REFERENCE.finditer(line):
                references.append(
                    Reference(relative, number, "docs/" + match["path"], match["anchor"])
                )
    return references


def _slugify(text: str) -> str:
    """The id MkDocs' table of contents gives a heading (Python-Markdown's default slugify)."""
    try:
        from markdown.extensions.toc import slugify
    except ImportError:  # the same rule, for environments without the docs extra
        import unicodedata

        value = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
        value = re.sub(r"[^\w\s-]", "", value).strip().lower()
        return re.sub(r"[-\s]+", "-", value)
    return slugify(text, "-")


def _plain_heading(text: str) -> str:
    """Heading text as the toc sees it: inline markup, links and HTML tags removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images -> their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    return text.replace("`", "").replace("*", "").replace("\\", "")


@lru_cache(maxsize=256)
def _anchors_of(path: str, mtime_ns: int) -> frozenset[str]:
    ids: set[str] = set()
    counts: dict[str, int] = {}
    fence: str | None = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        heading = _HEADING.match(line)
        if heading is None:
            outside_code = _CODE_SPAN.sub("", line)
            ids.update(m["id"] for m in _HTML_ID.finditer(outside_code))
            ids.update(m["id"] for m in _ATTR_ID.finditer(outside_code))
            continue
        text = heading["text"]
        explicit = re.search(r"\s*\{:?\s*([^}]*)\}\s*$", text)
        if explicit and "#" in explicit.group(1):
            ids.update(m["id"] for m in _ATTR_ID.finditer(explicit.group(0)))
            continue
        if explicit:
            text = text[: explicit.start()]
        slug = _slugify(_plain_heading(text)) or "_"
        # Repeated headings get _1, _2, ... as in the toc extension.
        n = counts.get(slug, 0)
        ids.add(slug if n == 0 else f"{slug}_{n}")
        counts[slug] = n + 1
    return frozenset(ids)


def page_anchors(page: Path) -> frozenset[str]:
    """Every anchor a Markdown page defines: explicit ids and generated heading ids.

    Args:
        page: Path of the Markdown file.

    Returns:
        The ids (empty for a page without headings).
    """
    page = Path(page)
    return _anchors_of(str(page.resolve()), page.stat().st_mtime_ns)


def check_references(
    root: Path,
    docs_dir: Path | None = None,
    globs: Iterable[str] = SOURCE_GLOBS,
) -> list[BrokenReference]:
    """Broken ``docs/<page>.md[#anchor]`` references in the sources under ``root``.

    Args:
        root: Repository root (the sources are found with ``globs`` under it).
        docs_dir: Folder that ``docs/`` in a reference means (default ``root / "docs"``).
        globs: File patterns relative to ``root`` (default :data:`SOURCE_GLOBS`).

    Returns:
        One entry per reference to a missing page or to an anchor the page does not define;
        empty when every reference resolves.
    """
    root = Path(root)
    docs = Path(docs_dir) if docs_dir is not None else root / "docs"
    broken = []
    for ref in find_references(root, globs):
        page = docs / ref.page[len("docs/") :]
        if not page.is_file():
            broken.append(BrokenReference(ref, "missing page"))
        elif ref.anchor is not None and ref.anchor not in page_anchors(page):
            broken.append(BrokenReference(ref, "missing anchor"))
    return broken


def format_broken(broken: Iterable[BrokenReference]) -> str:
    """One line per broken reference, for error messages."""
    return "\n".join(f"  {item}" for item in broken)


def main(argv: list[str] | None = None) -> int:
    """List the broken references under ROOT (default: this repository); exit 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    broken = check_references(root)
    if broken:
        print(f"{len(broken)} broken docs reference(s):\n{format_broken(broken)}")
        return 1
    print(f"docs references: {len(find_references(root))} found, all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
