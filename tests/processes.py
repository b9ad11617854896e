"""Servers the tests start as subprocesses: wait until one is ready, stop it by its own PID."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

__all__ = ["stop_process", "wait_ready"]


def wait_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    log: Callable[[], str],
) -> None:
    """Poll ``ready()`` until it holds; RuntimeError with the server's log if it exits or the
    ``timeout`` passes first (the caller stops it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{log()}")
        if ready():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not answer within {timeout} s:\n{log()}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` (ours, by its PID), then kill it if it lingers; wait for it."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
