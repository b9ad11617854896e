"""Gateway replicas sharing one real redis-server in front of the real slurmrestd: ``slurmgate
serve`` processes, each on its own port, merge a burst of identical misses into one upstream call.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab.env import Lab, LabSuite
from tests.lab.private_restd import free_port
from tests.redis_server import RedisServer
from tests.server.cache_lab import burst, by_suite, restd_log, upstream_calls
from tests.server.gateway import create_token

pytestmark = pytest.mark.lab

SLURMGATE = str(Path(sys.executable).parent / "slurmgate")


def write_config(path: Path, port: int, suite: LabSuite, redis: RedisServer) -> None:
    path.write_text(
        f"[listen]\nport = {port}\n"
        f'[upstream]\nurl = "{suite.url}"\n'
        f'[slurm_user_token]\njwt_key = "{suite.jwt_key}"\n'
        '[auth]\ntokens_file = "tokens.toml"\n'
        f'[cache]\nbackend = "redis"\nredis_url = "{redis.url}"\nkey_prefix = "sg-replicas"\n'
    )


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Wait until ``GET /meta/versions`` answers 200; raise with the replica's log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"replica exited ({process.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/meta/versions", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:  # URLError included: not listening yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"replica {url} not ready within {timeout} s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the replica's PID, then wait (SIGKILL if it does not exit)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def replicas(
    count: int, suite: LabSuite, redis: RedisServer, tmp_path: Path
) -> Iterator[list[str]]:
    """``count`` ``slurmgate serve`` processes sharing ``redis``; yields their base URLs."""
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(count):
            port = free_port()
            config = tmp_path / f"replica{index}.toml"
            write_config(config, port, suite, redis)
            log = tmp_path / f"replica{index}.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [SLURMGATE, "serve", "--config", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(urls[-1], process, log)
        yield urls
    finally:
        for process in processes:
            stop(process)
    assert [p.returncode for p in processes] == [0] * count, "a replica did not exit cleanly"


@by_suite
def test_replicas_merge_a_burst_into_one_upstream_call(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, redis_server: RedisServer
) -> None:
    suite = lab.suites[suite_name]
    token = create_token(tmp_path / "tokens.toml", "alice")
    partitions = f"/slurm/{version}/partitions/"
    with replicas(3, suite, redis_server, tmp_path) as urls:
        calls = upstream_calls(restd_log(suite), "GET", partitions)
        replies = asyncio.run(burst([url + partitions for url in urls], token, 300))
        assert Counter(r.status for r in replies) == {200: 300}
        assert calls() == 1, Counter(r.cache for r in replies)
        assert len({r.body for r in replies}) == 1
        # Only one replica called upstream; the others waited for its entry in Redis.
        assert Counter(r.cache for r in replies)["HIT"] >= 200
