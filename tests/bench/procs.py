"""Processes we start and what /proc says about them: CPU seconds, peak RSS, children, ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REPO",
    "Proc",
    "Usage",
    "cpu_seconds",
    "free_port",
    "peak_rss_kib",
    "usage",
    "wait_for_port",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The repository: ``python -m tests.bench...`` subprocesses run from here.
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    # state, ppid, ... with utime and stime at positions 14 and 15 of the whole line.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` of ``pid``: its peak resident set so far, in KiB (0 if it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (nginx's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


@dataclass(frozen=True)
class Usage:
    """CPU seconds used so far and peak RSS of a set of processes."""

    cpu: float
    #: sum of each process's VmHWM, KiB
    rss_kib: int


def usage(pids: Iterable[int]) -> Usage:
    """Usage summed over ``pids``."""
    pids = list(pids)
    return Usage(sum(cpu_seconds(p) for p in pids), sum(peak_rss_kib(p) for p in pids))


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until something accepts on ``127.0.0.1:port``; raise with ``log`` if ``process``
    exits first or nothing does within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited {process.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


class Proc:
    """One process of ours, started with its output in ``log`` and stopped by its PID only."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """Its PID."""
        return self.process.pid

    def wait_listening(self, port: int, timeout: float = 60.0) -> None:
        """Wait until it accepts on ``port`` (see :func:`wait_for_port`); stop it if it does not."""
        try:
            wait_for_port(port, self.process, self.log, timeout)
        except RuntimeError:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` to our PID and wait; SIGKILL if it is still there after ``timeout``."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
