"""Import each module named on the command line first, in a process of its own.

``python -m tests.import_alone NAME...`` (:func:`check`) prints one JSON line per module (name,
exit code, the end of its traceback) and exits 1 if any failed. Every child is forked from one
parent that has already imported, by their top-level names, the standard-library and third-party
packages the modules use, and nothing of the packages named (slurmgate): the child's first
slurmgate import is the module itself, as in a fresh interpreter, so an import cycle among
slurmgate's modules fails exactly as it would there. What the fork saves is each child's start-up
and its imports of aiohttp, pydantic, cryptography (half the CPU of a fresh interpreter per module).

Packages are preloaded by their top-level names only, which runs what ``import name`` runs first in
any fresh interpreter: a module that uses ``package.submodule`` without importing it still fails,
unless another preloaded package imports that submodule itself (the one thing a fresh interpreter
per module would catch and this does not).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterable
from pathlib import Path

from tests.layout import REPO, package_dirs

__all__ = ["check", "check_every_module", "main", "package_modules"]

#: Children at once: the machine's cores, so a 2-core machine is not oversubscribed.
PARALLEL = max(1, os.cpu_count() or 1)


def package_modules() -> list[str]:
    """Every module of every folder in pyproject's package-dir, by its import name."""
    names = []
    for package, folder in package_dirs().items():
        for source in sorted(folder.rglob("*.py")):
            parts = source.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join((package, *parts)))
    return names


def check(names: list[str], pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run this checker on ``names`` in a new interpreter (with ``pythonpath`` as PYTHONPATH)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "tests.import_alone", *names],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def check_every_module() -> subprocess.CompletedProcess[str]:
    """:func:`check` on :func:`package_modules`."""
    return check(package_modules())


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _top_level_used(names: Iterable[str], own: set[str]) -> list[str]:
    """Top-level names of what importing ``names`` loads, other than the packages in ``own``
    (found in a child, so this process stays clean)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        for name in names:
            # A failure here is reported by the module's own child.
            with contextlib.suppress(BaseException):
                importlib.import_module(name)
        found = sorted({_top(n) for n in list(sys.modules)} - own)
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    used: list[str] = json.loads(b"".join(chunks) or b"[]")
    return used


def _preload(names: Iterable[str], own: set[str]) -> None:
    for top in _top_level_used(names, own):
        if top not in sys.modules and not top.startswith("__"):
            try:
                importlib.import_module(top)
            except Exception:  # noqa: S112 - only an optimisation: the child imports it again
                continue
    loaded = sorted(n for n in sys.modules if _top(n) in own)
    assert loaded == [], f"preloading imported modules that must be imported first: {loaded}"


def _start(name: str, output: Path) -> int:
    """Fork a child that imports ``name`` with its stdout and stderr in ``output``; its PID."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 0
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return pid


def main(argv: list[str]) -> int:
    """Import each of ``argv`` first in its own forked child; print a JSON line per module."""
    own = {_top(name) for name in argv}
    loaded = sorted(n for n in sys.modules if _top(n) in own)
    if loaded:
        # python -m tests.import_alone loads tests itself: its modules cannot be checked here.
        print(f"already imported, cannot be imported first: {loaded}", file=sys.stderr)
        return 2
    _preload(argv, own)
    pending = list(enumerate(argv))
    running: dict[int, tuple[str, Path]] = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="sg-imports-") as scratch:
        while pending or running:
            while pending and len(running) < PARALLEL:
                index, name = pending.pop(0)
                output = Path(scratch) / f"{index}.out"
                running[_start(name, output)] = (name, output)
            pid, status = os.wait()
            name, output = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            text = output.read_text(errors="replace") if output.exists() else ""
            failed += code != 0
            print(json.dumps({"name": name, "code": code, "output": text[-1500:]}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
