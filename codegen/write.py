"""Turn rendered text into the bytes of generated/, and write them or compare them.

Every ``.py`` file goes through ``ruff format`` with fixed settings (so the bytes do not depend on
where the output lands), line endings become LF, the text ends in exactly one newline and is
encoded as UTF-8. Writing wipes the target first, so a file codegen no longer renders disappears;
check mode writes nothing and describes every difference instead.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from slurmgate.codegen.render.header import MARKER

__all__ = [
    "RUFF_FORMAT",
    "WriteError",
    "diff_tree",
    "format_python",
    "prepare",
    "write_tree",
]

#: ``ruff format`` settings for generated code, independent of any pyproject.toml.
RUFF_FORMAT: tuple[str, ...] = ("--isolated", "--line-length=100", "--target-version=py311")

_SKIP = {"__pycache__"}
_DIFF_LINES = 40


class WriteError(Exception):
    """The target cannot be written (it holds files codegen did not make, or ruff failed)."""


def format_python(source: str, name: str) -> str:
    """``source`` as ``ruff format`` writes it; ``name`` only labels errors."""
    command = [
        sys.executable,
        "-m",
        "ruff",
        "format",
        *RUFF_FORMAT,
        f"--stdin-filename={name}",
        "-",
    ]
    done = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WriteError(f"ruff format failed on {name}:\n{done.stderr.strip()}")
    return done.stdout


def _normalize(text: str) -> bytes:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return (text.rstrip("\n") + "\n").encode("utf-8")


def prepare(files: Mapping[str, str]) -> dict[str, bytes]:
    """Final bytes of every file, keyed by path relative to the target, in sorted order."""
    prepared: dict[str, bytes] = {}
    for name in sorted(files):
        text = files[name]
        if name.endswith(".py"):
            text = format_python(text, name)
        prepared[name] = _normalize(text)
    return prepared


def _existing(target: Path) -> dict[str, Path]:
    if not target.exists():
        return {}
    if not target.is_dir():
        raise WriteError(f"{target} is not a directory")
    found: dict[str, Path] = {}
    for path in sorted(target.rglob("*")):
        relative = path.relative_to(target)
        if path.is_file() and not _SKIP & set(relative.parts):
            found[relative.as_posix()] = path
    return found


def write_tree(target: Path, files: Mapping[str, bytes]) -> None:
    """Replace everything in ``target`` by ``files``; refuse if it holds a file we did not make."""
    for name, path in _existing(target).items():
        data = path.read_bytes()
        if data.strip() and MARKER.encode() not in data[:400]:
            raise WriteError(
                f"{target / name} was not generated (no {MARKER!r} header); not wiping"
            )
    if target.exists():
        shutil.rmtree(target)
    for name in sorted(files):
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])


def diff_tree(target: Path, files: Mapping[str, bytes]) -> list[str]:
    """What differs between ``target`` and ``files``, as readable lines; empty when identical."""
    existing = _existing(target)
    missing = sorted(set(files) - set(existing))
    extra = sorted(set(existing) - set(files))
    changed = [
        name
        for name in sorted(set(files) & set(existing))
        if existing[name].read_bytes() != files[name]
    ]
    if not (missing or extra or changed):
        return []
    lines = [
        f"{target} is out of date: {len(changed)} changed, {len(missing)} missing, "
        f"{len(extra)} extra; run `make regen`",
    ]
    lines += [f"  missing: {name}" for name in missing]
    lines += [f"  extra:   {name}" for name in extra]
    for name in changed:
        old = existing[name].read_bytes().decode("utf-8", "replace").splitlines()
        new = files[name].decode("utf-8").splitlines()
        diff = list(
            difflib.unified_diff(
                old, new, f"{name} (committed)", f"{name} (regenerated)", lineterm="", n=1
            )
        )
        added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
        lines.append(f"  changed: {name} (+{added} -{removed})")
        lines += [f"    {line}" for line in diff[:_DIFF_LINES]]
        if len(diff) > _DIFF_LINES:
            lines.append(f"    ... {len(diff) - _DIFF_LINES} more diff lines")
    return lines
