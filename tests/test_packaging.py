"""The distribution ships every package: pyproject's list matches the tree, and a built wheel
holds every module (a package missing from the list installs fine in editable mode and breaks
every non-editable install)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.lab.env import REPO

FOLDERS = ("codegen", "generated", "policies", "server")


def tree_packages() -> set[str]:
    found = set()
    for folder in FOLDERS:
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO)
            found.add("slurmgate." + ".".join(relative.parts))
    return found


def test_pyproject_lists_every_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    missing = sorted(tree_packages() - listed)
    assert missing == [], f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert sorted(listed - tree_packages()) == []


def test_the_wheel_holds_every_module_and_document(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("slurmgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in FOLDERS:
        for source in (REPO / folder).rglob("*"):
            if source.suffix in {
                ".py",
                ".toml",
                ".yaml",
                ".jinja",
                ".json",
            } and "__pycache__" not in str(source):
                inside = "slurmgate/" + source.relative_to(REPO).as_posix()
                assert inside in names, f"{inside} is not in the wheel"
