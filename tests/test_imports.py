"""Every module imports on its own, first, in a fresh interpreter: an import cycle shows up only
for some import orders, and the test run's own order would hide it."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.lab.env import REPO

FOLDERS = ("codegen", "policies", "server")


def modules() -> list[str]:
    names = []
    for folder in FOLDERS:
        for source in sorted((REPO / folder).rglob("*.py")):
            parts = source.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append("slurmgate." + ".".join(parts))
    return names


def import_alone(name: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return name, done.returncode, done.stderr[-600:]


def test_every_module_imports_first() -> None:
    names = modules()
    assert "slurmgate.server.config" in names
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(import_alone, names))
    failures = [f"{name}: {error}" for name, code, error in results if code != 0]
    assert failures == []
