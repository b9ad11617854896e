"""Every module imports on its own, first, in a process where no slurmgate module is loaded yet
(tests/import_alone.py): an import cycle shows up only for some import orders, and the test run's
own order would hide it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.layout import REPO, package_dirs


def modules() -> list[str]:
    """Every module of every folder in pyproject's package-dir, by its import name."""
    names = []
    for package, folder in package_dirs().items():
        for source in sorted(folder.rglob("*.py")):
            parts = source.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join((package, *parts)))
    return names


def import_each_first(names: list[str], pythonpath: Path | None = None) -> dict[str, str]:
    """Module -> the end of its traceback, for those that fail when imported first."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run(
        [sys.executable, "-m", "tests.import_alone", *names],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["name"] for r in results) == sorted(names), done.stderr[-2000:]
    failures = {r["name"]: r["output"] for r in results if r["code"] != 0}
    assert done.returncode == (1 if failures else 0), done.stderr[-2000:]
    return failures


def test_every_module_imports_first() -> None:
    names = modules()
    assert "slurmgate.server.config" in names
    assert "slurmgate.generated.v0_0_45.models" in names
    assert import_each_first(names) == {}


def test_a_cycle_fails_only_for_the_module_imported_first(tmp_path: Path) -> None:
    """The checker itself: a cycle that breaks one import order and not the other."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    # first.py imports second.py before it defines the VALUE second.py needs.
    (package / "first.py").write_text("import cyclic.second\n\nVALUE = 1\n", encoding="utf-8")
    (package / "second.py").write_text("from cyclic.first import VALUE\n", encoding="utf-8")
    failures = import_each_first(["cyclic.first", "cyclic.second"], pythonpath=tmp_path)
    assert list(failures) == ["cyclic.first"]
    assert "ImportError: cannot import name 'VALUE'" in failures["cyclic.first"]
