"""A short outage of one of the lab's shared daemons (slurmctld, slurmdbd), always undone.

The lab's daemons serve every test and every person using the lab, and a private slurmctld or
slurmdbd would need a cluster of its own, so a fault test stops the lab's own daemon by the PID the
lab recorded, for a few seconds, and starts it again in a ``finally`` with the lab's own
:func:`~tests.lab.daemons.start_daemon`, run as ``make lab`` runs it. The lab's lock is held all
along, so that a ``make lab`` running meanwhile waits instead of starting the daemon under the
test's feet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .__main__ import lock
from .chroot import in_chroot
from .daemons import Daemon, daemons, port_open
from .env import REPO
from .rest import rest_get
from .state import load_state, pid_is_ours
from .suites import SUITES, LabError, Suite

__all__ = ["MAX_OUTAGE", "Outage", "daemon_stopped", "lab_healthy", "wait_lab_healthy"]

#: The longest an outage may last, seconds; the daemon is started again after it in any case.
MAX_OUTAGE = 30.0


@dataclass
class Outage:
    """What :func:`daemon_stopped` did: the PID stopped, when, and the PID started after."""

    suite: str
    key: str
    stopped_pid: int
    stopped_at: float = 0.0
    restarted_pid: int | None = None
    restarted_at: float = 0.0

    @property
    def seconds(self) -> float:
        """How long the daemon was down (0 until it is started again)."""
        return max(0.0, self.restarted_at - self.stopped_at) if self.restarted_at else 0.0


def _daemon(suite: Suite, key: str) -> Daemon:
    by_key = {d.key: d for d in daemons(suite)}
    if key not in ("slurmctld", "slurmdbd"):
        raise ValueError(f"only slurmctld and slurmdbd outages are supported, not {key!r}")
    return by_key[key]


def _ready(suite: Suite, key: str) -> Callable[[], bool]:
    if key == "slurmdbd":
        return lambda: port_open(suite.dbd_port)
    return lambda: in_chroot(suite, ["scontrol", "ping"], check=False, quiet=True).returncode == 0


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, LabError):
            if check():
                return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def daemon_stopped(suite_name: str, key: str) -> Iterator[Outage]:
    """Stop the lab's ``key`` daemon of ``suite_name`` (SIGTERM to its recorded PID) for the
    duration of the block, then start it again and wait until it answers.

    The block must stay under :data:`MAX_OUTAGE` seconds; the restart happens whatever the block
    raised. Raises :class:`LabError` if the daemon is not running as the lab recorded it (nothing
    is stopped then) or does not come back.
    """
    suite = SUITES[suite_name]
    daemon = _daemon(suite, key)
    with lock():
        pid = int(load_state(suite)["pids"].get(key, 0))
        if not pid or not pid_is_ours(suite, pid, daemon.program):
            raise LabError(f"{suite_name}: {key} is not running as the lab recorded it (make lab)")
        outage = Outage(suite_name, key, pid)
        try:
            outage.stopped_at = time.monotonic()
            _stop(suite, pid, daemon.program)
            yield outage
        finally:
            # Started again as `make lab` would, whatever happened above.
            _start_detached(suite, key)
            outage.restarted_pid = int(load_state(suite)["pids"][key])
            outage.restarted_at = time.monotonic()
            if not _wait(_ready(suite, key), 60):
                raise LabError(f"{suite_name}: {key} did not come back within 60 s")


def _start_detached(suite: Suite, key: str) -> None:
    """:func:`start_daemon` in a short-lived Python process, as ``python3 -m tests.lab up`` runs
    it: the daemon is then nobody's child here (like every other lab daemon), not a process this
    test would have to wait for. The lab's lock stays with the caller."""
    code = (
        "import sys\n"
        "from tests.lab.daemons import daemons, start_daemon\n"
        "from tests.lab.state import load_state\n"
        "from tests.lab.suites import SUITES\n"
        "suite = SUITES[sys.argv[1]]\n"
        "daemon = next(d for d in daemons(suite) if d.key == sys.argv[2])\n"
        "start_daemon(suite, daemon, load_state(suite))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, suite.name, key],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=True,
    )


def _stop(suite: Suite, pid: int, program: str) -> None:
    """SIGTERM to ``pid`` (the lab's daemon; not our child, its parent reaps it); SIGKILL after
    15 s."""
    os.kill(pid, signal.SIGTERM)
    if _wait(lambda: not pid_is_ours(suite, pid, program), 15):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait(lambda: not pid_is_ours(suite, pid, program), 10):
        raise LabError(f"{suite.name}: {program} (pid {pid}) did not stop")


def lab_healthy(suite_name: str) -> bool:
    """Whether the suite's shared slurmrestd answers both pings with every daemon responding."""
    suite = SUITES[suite_name]
    version = suite.api_versions[-1]
    for namespace in ("slurm", "slurmdb"):
        status, body = rest_get(suite, f"/{namespace}/{version}/ping/")
        pings = body.get("pings") if isinstance(body, dict) else None
        if status != 200 or not pings:
            return False
        if not all(p.get("responding") is True for p in pings if isinstance(p, dict)):
            return False
    return True


def wait_lab_healthy(suite_name: str, timeout: float = 60.0) -> bool:
    """Poll :func:`lab_healthy` for up to ``timeout`` seconds."""
    return _wait(lambda: lab_healthy(suite_name), timeout)
