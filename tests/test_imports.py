"""Every module imports on its own, first, in a process where no slurmgate module is loaded yet
(tests/import_alone.py): an import cycle shows up only for some import orders, and the test run's
own order would hide it. The check of every module starts when collection ends (tests/early.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import early
from tests.import_alone import check, check_every_module, package_modules


@pytest.fixture(scope="session")
def every_module_imported(pytestconfig: pytest.Config) -> subprocess.CompletedProcess[str]:
    """The checker's run on every module of the tree (started early when this test is selected)."""
    return early.result(pytestconfig, "every_module_imported", check_every_module)


def failures_of(done: subprocess.CompletedProcess[str], names: list[str]) -> dict[str, str]:
    """Module -> the end of its traceback, for those that failed when imported first."""
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["name"] for r in results) == sorted(names), done.stderr[-2000:]
    failures = {r["name"]: r["output"] for r in results if r["code"] != 0}
    assert done.returncode == (1 if failures else 0), done.stderr[-2000:]
    return failures


def test_every_module_imports_first(
    every_module_imported: subprocess.CompletedProcess[str],
) -> None:
    names = package_modules()
    assert "slurmgate.server.config" in names
    assert "slurmgate.generated.v0_0_45.models" in names
    assert failures_of(every_module_imported, names) == {}


def test_a_cycle_fails_only_for_the_module_imported_first(tmp_path: Path) -> None:
    """The checker itself: a cycle that breaks one import order and not the other."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    # first.py imports second.py before it defines the VALUE second.py needs.
    (package / "first.py").write_text("import cyclic.second\n\nVALUE = 1\n", encoding="utf-8")
    (package / "second.py").write_text("from cyclic.first import VALUE\n", encoding="utf-8")
    names = ["cyclic.first", "cyclic.second"]
    failures = failures_of(check(names, pythonpath=tmp_path), names)
    assert list(failures) == ["cyclic.first"]
    assert "ImportError: cannot import name 'VALUE'" in failures["cyclic.first"]
