"""What the lab started: PIDs and mounts per suite, so that it stops and unmounts only those."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .suites import Suite

__all__ = ["load_state", "pid_is_ours", "save_state"]


def load_state(suite: Suite) -> dict[str, Any]:
    path = suite.home / "state.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {"pids": {}, "mounts": []}


def save_state(suite: Suite, state: dict[str, Any]) -> None:
    path = suite.home / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def pid_is_ours(suite: Suite, pid: int, program: str) -> bool:
    """True if ``pid`` is alive, runs ``program`` and lives in this suite's chroot."""
    try:
        root = os.readlink(f"/proc/{pid}/root")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return root == str(suite.root) and Path(cmdline[0].decode()).name == program
