"""The one list of the tree's folders: pyproject's ``[tool.setuptools.package-dir]``.

Tests read it here; the Makefile runs ``python3 -m tests.layout`` (standard library only, so it
works before the virtualenv exists) for the typing link tree and mypy's package list. Adding a
folder is one line in pyproject.toml.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

__all__ = ["REPO", "package_dirs"]

REPO = Path(__file__).resolve().parents[1]


def package_dirs(pyproject: Path = REPO / "pyproject.toml") -> dict[str, Path]:
    """Import name -> folder, e.g. ``slurmgate.server`` -> ``<repo>/server``."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {name: pyproject.parent / folder for name, folder in sorted(mapping.items())}


def main() -> int:
    """Print ``name=folder`` per package, folders relative to the repository, for make."""
    for name, folder in package_dirs().items():
        print(f"{name}={folder.relative_to(REPO).as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
