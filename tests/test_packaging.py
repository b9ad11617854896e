"""The distribution ships every package: setuptools finds them from pyproject's package-dir (the one
list of folders, no list of packages to forget), and a built wheel holds every module and document
of the tree, a new generated version included, and nothing else (a package missing from the wheel
installs fine in editable mode and breaks every non-editable install)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.layout import REPO, package_dirs

#: What the folders ship: code, and the package data pyproject names (templates, policies and
#: own endpoints, OpenAPI documents).
SHIPPED = {".py", ".toml", ".yaml", ".jinja", ".json"}


def tree_files(root: Path, dirs: dict[str, Path]) -> set[str]:
    """Every file the wheel must hold, as its name inside the wheel."""
    found = set()
    for package, folder in dirs.items():
        prefix = package.replace(".", "/")
        for source in folder.rglob("*"):
            if source.suffix in SHIPPED and "__pycache__" not in source.parts:
                found.add(f"{prefix}/{source.relative_to(folder).as_posix()}")
    assert found, f"no files under {root}"
    return found


def build_wheel(source: Path, out: Path) -> set[str]:
    """Build ``source`` as pip does and return the names in the wheel."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("slurmgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_package_dir_is_the_only_list_of_packages() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    assert "packages" not in setuptools, "setuptools discovers the packages from package-dir"
    dirs = package_dirs()
    assert "slurmgate.server" in dirs
    for package, folder in dirs.items():
        assert (folder / "__init__.py").is_file(), package
        assert package.startswith("slurmgate."), "nothing generic at the top of site-packages"


def test_the_wheel_holds_every_module_and_document_a_new_version_included(tmp_path: Path) -> None:
    """Built from a copy of the tree with one more generated version than the repository has,
    and no pyproject edit: setuptools must find it, its openapi.json as well."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in package_dirs().values():
        shutil.copytree(folder, source / folder.relative_to(REPO), ignore=ignore)
    new = source / "generated" / "v0_0_99"
    assert not (REPO / "generated" / "v0_0_99").exists()
    shutil.copytree(source / "generated" / "v0_0_45", new)

    names = build_wheel(source, tmp_path / "dist")
    expected = tree_files(source, package_dirs(source / "pyproject.toml"))
    assert {
        "slurmgate/generated/v0_0_99/__init__.py",
        "slurmgate/generated/v0_0_99/models.py",
        "slurmgate/generated/v0_0_99/openapi.json",
        "slurmgate/policies/scopes.toml",
        "slurmgate/codegen/templates/routes.py.jinja",
    } <= expected
    assert sorted(expected - names) == [], "missing from the wheel"
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"slurmgate", f"slurmgate-{version['version']}.dist-info"}, top
    shipped = {name for name in names if name.startswith("slurmgate/")}
    assert sorted(shipped - expected) == [], "in the wheel but not in the tree"
