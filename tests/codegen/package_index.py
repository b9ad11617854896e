"""A real package index (pypiserver) on a free loopback port; fresh virtualenvs to install into."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # passlib 1.7.4 (its latest release) imports the stdlib's crypt, deprecated since 3.11.
    warnings.filterwarnings("ignore", "'crypt' is deprecated", DeprecationWarning)
    from passlib.apache import HtpasswdFile  # type: ignore[import-untyped]

from tests.processes import stop_process, wait_ready

__all__ = ["PackageIndex", "fresh_venv", "pip", "run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(*command: str | Path, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """Run a command; fail with its output when it fails. Returns stdout and stderr."""
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output[-4000:]}"
    return output


def fresh_venv(directory: Path) -> Path:
    """A new virtualenv (no system site-packages) at ``directory``; returns its python.

    Made without pip (ensurepip takes about 10 s): :func:`pip` installs into it with this
    virtualenv's pip, as ``pip --python`` does for any target environment.
    """
    run(sys.executable, "-m", "venv", "--without-pip", directory, timeout=120)
    return directory / "bin" / "python"


def pip(python: Path, *args: str | Path, timeout: float = 300) -> str:
    """Run ``pip ARGS`` for the environment of ``python`` (a :func:`fresh_venv`)."""
    return run(sys.executable, "-m", "pip", "--python", python, *args, timeout=timeout)


class PackageIndex:
    """One pypiserver process of ours, uploads allowed for one htpasswd user; stopped by PID."""

    def __init__(self, directory: Path, user: str, password: str) -> None:
        self.directory = directory
        self.packages = directory / "packages"
        self.packages.mkdir(parents=True)
        self.htpasswd = directory / "htpasswd"
        # apr_md5_crypt: what `htpasswd -m` writes, and needs no bcrypt backend for passlib.
        passwords = HtpasswdFile(str(self.htpasswd), new=True, default_scheme="apr_md5_crypt")
        passwords.set_password(user, password)
        passwords.save()
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The upload URL (twine's ``--repository-url``)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def simple(self) -> str:
        """The index URL for pip (``--index-url``)."""
        return f"http://127.0.0.1:{self.port}/simple/"

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until its health endpoint answers."""
        assert self.process is None, "already running"
        log = (self.directory / "pypiserver.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "pypiserver", "run",
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--passwords", str(self.htpasswd),
                "--authenticate", "update",
                str(self.packages),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
        log.close()
        try:
            wait_ready(
                self.process,
                self.healthy,
                what=f"pypiserver on port {self.port}",
                timeout=timeout,
                log=self.log,
            )
        except RuntimeError:
            self.stop()
            raise

    def healthy(self) -> bool:
        """Whether it answers its health endpoint now."""
        try:
            # Our own loopback server.
            with urllib.request.urlopen(f"{self.url}health", timeout=1) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def log(self) -> str:
        """The end of its log."""
        return (self.directory / "pypiserver.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Terminate it (by our PID only) and wait."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None
