"""A slurmrestd of one test's own, in a suite's chroot on a free loopback port.

The lab's shared slurmrestd serves every other test, so a test that needs slurmrestd to go away
(stale-if-error, fault injection) starts one of these, stops it by its PID and may start it again
on the same port. It talks to the suite's slurmctld and slurmdbd like the shared one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from .rest import mint_token
from .suites import CHROOT_ENV, JWT_KEY, RESTD_USER

__all__ = ["PrivateRestd", "free_port"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRestd:
    """One slurmrestd process of ours over HTTP on ``127.0.0.1:port``, logging to ``log``.

    ``start`` waits until it answers ``GET /openapi/v3``; ``stop`` sends SIGTERM to its PID (and
    SIGKILL if it does not exit); ``start`` again reuses the port. Also a context manager.
    """

    def __init__(self, root: Path, log: Path, port: int | None = None) -> None:
        self.root = root
        #: slurmrestd's output, appended to across restarts (one line per request it routes)
        self.log = log
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its base URL, for ``upstream.url``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The PID of the running slurmrestd (chroot and env exec it, so it keeps theirs)."""
        assert self.process is not None, "not running"
        return self.process.pid

    def is_slurmrestd(self) -> bool:
        """Whether our PID is alive and runs slurmrestd inside the suite's chroot (per /proc)."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            root = os.readlink(f"/proc/{self.pid}/root")
            program = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return False
        return root == str(self.root) and Path(program.decode()).name == "slurmrestd"

    def answers(self) -> bool:
        """Whether it answers ``GET /openapi/v3`` with 200 now."""
        key = (self.root / JWT_KEY.lstrip("/")).read_bytes()
        request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
            self.url + "/openapi/v3", headers={"X-SLURM-USER-TOKEN": mint_token(key, "slurm", 60)}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 60.0) -> None:
        """Start it (again) and wait until it answers; raise with its log if it does not."""
        assert self.process is None, "already running"
        env = dict(CHROOT_ENV, HOME="/")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    "chroot", f"--userspec={RESTD_USER}:{RESTD_USER}", str(self.root),
                    # Without SLURM_JWT=daemon slurmrestd rejects every request.
                    "/usr/bin/env", "SLURM_JWT=daemon",
                    "/usr/sbin/slurmrestd", "-a", "rest_auth/jwt", f"127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"slurmrestd exited at start:\n{self._tail()}")
            if self.is_slurmrestd() and self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"slurmrestd did not answer within {timeout} s:\n{self._tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to our PID and wait; SIGKILL if it is still there after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL to our PID, as a crash would; :meth:`start` may reuse the port at once."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    def __enter__(self) -> PrivateRestd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
