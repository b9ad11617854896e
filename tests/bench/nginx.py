"""Debian's nginx as a caching proxy in front of slurmrestd, in a prefix of its own.

One nginx process tree (master + ``workers``) listens on two free loopback ports: ``cache_port``
with proxy_cache, proxy_cache_lock and proxy_cache_use_stale updating (what a site would put in
front of slurmrestd instead of slurmgate), and ``plain_port`` as a plain reverse proxy (the
overhead of any proxy at all). Started with ``daemon off`` so the master is our child; stopped by
its PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from tests.bench.procs import Proc, children, free_port

__all__ = ["Nginx", "check_config", "render_config"]

_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "cache")


def render_config(
    prefix: Path,
    *,
    upstream_port: int,
    cache_port: int,
    plain_port: int,
    workers: int,
    valid_seconds: int,
    user: str | None,
) -> str:
    """nginx.conf for a caching and a plain proxy in front of ``127.0.0.1:upstream_port``.

    Answers are shared by every caller (the cache key ignores the credentials), as slurmgate does
    without ``per_user``; 200 answers stay fresh ``valid_seconds``.
    """
    temp = "\n".join(
        f"    {name}_temp_path {prefix / name};" for name in _TEMP_DIRS if name != "cache"
    )
    user_line = f"user {user};" if user else ""
    proxy = """            proxy_pass http://slurmrestd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 300s;"""
    return f"""# Written by tests/bench/nginx.py for one benchmark run.
daemon off;
{user_line}
worker_processes {workers};
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temp}
    proxy_cache_path {prefix / "cache"} levels=1:2 keys_zone=slurm:16m max_size=8g inactive=1h
                     use_temp_path=off;
    upstream slurmrestd {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{cache_port};
        location / {{
{proxy}
            proxy_cache slurm;
            proxy_cache_valid 200 {valid_seconds}s;
            proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 300s;
            proxy_cache_lock_age 300s;
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
    server {{
        listen 127.0.0.1:{plain_port};
        location / {{
{proxy}
        }}
    }}
}}
"""


def _binary() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else ""
    )
    if not binary:
        raise RuntimeError("nginx is not installed (make apt installs it)")
    return binary


def _prepare(prefix: Path, user: str | None) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    for name in _TEMP_DIRS:
        (prefix / name).mkdir(exist_ok=True)
    if user:
        # The workers run as ``user``: they write the temporary and cache files.
        entry = pwd.getpwnam(user.split()[0])
        for name in _TEMP_DIRS:
            os.chown(prefix / name, entry.pw_uid, entry.pw_gid)
        prefix.chmod(0o755)


def _worker_user() -> str | None:
    """nginx's master started as root switches its workers to this user."""
    return "nobody nogroup" if os.geteuid() == 0 else None


def check_config(prefix: Path, **settings: int) -> str:
    """Render the configuration into ``prefix`` and run ``nginx -t`` on it; its output."""
    user = _worker_user()
    _prepare(prefix, user)
    conf = prefix / "nginx.conf"
    conf.write_text(render_config(prefix, user=user, **settings))
    proc = subprocess.run(
        [_binary(), "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nginx -t refused {conf}:\n{proc.stderr}")
    return proc.stderr


class Nginx:
    """nginx with ``workers`` worker processes in front of slurmrestd on ``upstream_port``."""

    def __init__(
        self, prefix: Path, *, upstream_port: int, workers: int, valid_seconds: int
    ) -> None:
        self.prefix = prefix
        self.workers = workers
        self.cache_port = free_port()
        self.plain_port = free_port()
        check_config(
            prefix,
            upstream_port=upstream_port,
            cache_port=self.cache_port,
            plain_port=self.plain_port,
            workers=workers,
            valid_seconds=valid_seconds,
        )
        self.proc = Proc(
            [
                _binary(),
                "-p", str(prefix),
                "-e", str(prefix / "error.log"),
                "-c", str(prefix / "nginx.conf"),
            ],
            prefix / "nginx.out",
        )  # fmt: skip
        self.proc.wait_listening(self.cache_port)
        self.proc.wait_listening(self.plain_port)

    @property
    def url(self) -> str:
        """The caching proxy's base URL."""
        return f"http://127.0.0.1:{self.cache_port}"

    @property
    def plain_url(self) -> str:
        """The plain proxy's base URL."""
        return f"http://127.0.0.1:{self.plain_port}"

    def pids(self) -> list[int]:
        """The master and its workers (and cache manager/loader)."""
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        """SIGQUIT (graceful) to the master, which stops its workers."""
        self.proc.stop(signal.SIGQUIT)
