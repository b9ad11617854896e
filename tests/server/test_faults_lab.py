"""Faults under load, against the real lab: slurmrestd killed and restarted, slurmctld stopped,
slurmdbd stopped, an upstream that accepts and never answers.

Each test runs ``slurmgate serve`` (a process of its own) in front of a slurmrestd of its own
(tests/lab/private_restd.py), loads it with concurrent clients, causes the fault, restores it, and
checks that every request got a well-formed answer (tests/server/faults.py: fresh or STALE 200, or
a 5xx in slurmrestd's envelope saying what failed), what ``/health`` said during the fault, that
the gateway process never crashed nor logged a traceback, and that service resumed by itself: the
same process answers 200 again. Redis killed under load is in test_cache_lab.py.

slurmctld and slurmdbd are the lab's own, shared daemons: tests/lab/outage.py stops one by its PID
for a few seconds under the lab's lock and always starts it again; the test then waits until the
shared slurmrestd's pings respond again, so the lab is healthy for the tests that follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout

from tests.lab.env import Lab, LabSuite
from tests.lab.outage import MAX_OUTAGE, daemon_stopped, wait_lab_healthy
from tests.lab.private_restd import PrivateRestd
from tests.server.faults import (
    GatewayProcess,
    Load,
    Reply,
    Request,
    hanging_proxy,
    malformed,
    summary,
)
from tests.server.gateway import create_token

pytestmark = pytest.mark.lab

#: Seconds the gateway waits for slurmrestd (upstream.timeout) in these tests: short, so that a
#: hung upstream costs each request a few seconds, not a minute.
UPSTREAM_TIMEOUT = 4.0
#: Seconds a fault lasts once the load has seen it.
FAULT_SECONDS = 6.0
#: Seconds service may take to resume after the fault is undone.
RESUME_SECONDS = 45.0


@dataclass
class Health:
    """What /health answered: anonymously, and with every check."""

    status: int
    body: dict[str, Any]
    detailed_status: int
    detailed: dict[str, Any]


@dataclass
class Run:
    """Everything a fault run observed."""

    replies: list[Reply]
    health_before: Health
    health_during: Health
    health_after: Health

    def phase(self, name: str) -> list[Reply]:
        return [r for r in self.replies if r.phase == name]


@contextlib.contextmanager
def private_restd(suite: LabSuite, tmp_path: Path) -> Iterator[PrivateRestd]:
    restd = PrivateRestd(suite.root, tmp_path / "slurmrestd.log")
    restd.start()
    try:
        yield restd
    finally:
        restd.stop()


@contextlib.contextmanager
def gateway(suite: LabSuite, tmp_path: Path, upstream_url: str) -> Iterator[GatewayProcess]:
    """``slurmgate serve`` in front of ``upstream_url``, with the tokens of :func:`fault_run`."""
    tokens = tmp_path / "tokens.toml"
    for user, scopes in (("alice", ("slurm:read", "slurmdb:read")), ("ops", ("slurmgate:health",))):
        (tmp_path / f"{user}.secret").write_text(create_token(tokens, user, scopes=scopes))
    process = GatewayProcess(
        tmp_path,
        {
            "upstream": {
                "url": upstream_url,
                "timeout": UPSTREAM_TIMEOUT,
                "connect_timeout": 1.0,
            },
            "slurm_user_token": {"jwt_key": str(suite.jwt_key)},
            "auth": {"tokens_file": str(tmp_path / "tokens.toml")},
            "cache": {"backend": "memory"},
            "health": {"timeout": 2.0, "max_age": 0.5},
        },
    )
    try:
        yield process
    finally:
        process.stop()


def requests(version: str, token: str) -> list[Request]:
    """A mix of reads: cached with and without stale-if-error, never cached, slurmdbd's."""
    auth = ("Authorization", f"Bearer {token}")
    stale = ("Cache-Control", "stale-if-error")
    return [
        Request(f"/slurm/{version}/nodes/", (auth, stale), stale_ok=True),
        Request(f"/slurm/{version}/partitions/", (auth, ("Cache-Control", "no-cache"))),
        Request(f"/slurm/{version}/ping/", (auth,)),
        # Always asked upstream (accounts stay fresh for 30 s or more), stale only on failure.
        Request(
            f"/slurmdb/{version}/accounts/",
            (auth, ("Cache-Control", "no-cache, stale-if-error")),
            stale_ok=True,
        ),
        Request(f"/slurmdb/{version}/qos/", (auth, ("Cache-Control", "no-cache"))),
    ]


async def health(url: str, token: str) -> Health:
    async with ClientSession(timeout=ClientTimeout(total=30)) as session:
        async with session.get(url + "/health") as response:
            status, body = response.status, json.loads(await response.read())
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(url + "/health", headers=headers) as response:
            return Health(status, body, response.status, json.loads(await response.read()))


async def fault_run(
    gw: GatewayProcess,
    version: str,
    tmp_path: Path,
    *,
    start_fault: Callable[[], Awaitable[None]],
    end_fault: Callable[[], Awaitable[None]],
    fault_seen: Callable[[Reply], bool],
) -> Run:
    """Load ``gw``; cause the fault once warm; undo it once the load has seen it for
    :data:`FAULT_SECONDS`; run until every kind of request succeeds fresh again, then a little
    longer. Everything bounded: the load by count and time, each wait by a deadline."""
    token, ops = ((tmp_path / f"{user}.secret").read_text() for user in ("alice", "ops"))
    kinds = requests(version, token)
    load = Load(gw.url, kinds, workers=12, max_requests=12_000, max_seconds=150, pause=0.05)
    runner = asyncio.create_task(load.run())
    try:
        # Before: every kind answered at least twice, so stale-if-error has entries to serve.
        warm = await load.until(lambda: min(_per_kind(load, "before").values()) >= 2, 30)
        assert warm, summary(load.replies)
        health_before = await health(gw.url, ops)
        load.phase = "down"
        await start_fault()
        seen = await load.until(lambda: any(fault_seen(r) for r in load.phase_replies("down")), 30)
        assert seen, f"the fault never showed: {summary(load.replies)}"
        await asyncio.sleep(FAULT_SECONDS / 2)
        health_during = await health(gw.url, ops)
        await asyncio.sleep(FAULT_SECONDS / 2)
        load.phase = "recovering"
        await end_fault()
        # Service resumes by itself: every kind answered fresh (200, not STALE) again.
        resumed = await load.until(
            lambda: all(
                any(r.status == 200 and r.cache != "STALE" for r in replies)
                for replies in _by_kind(load, "recovering", kinds).values()
            ),
            RESUME_SECONDS,
        )
        assert resumed, f"service did not resume: {summary(load.replies)}"
        load.phase = "back"
        await load.until(lambda: load.count("back") >= 60, 20)
        health_after = await _health_ok(gw.url, ops)
    finally:
        load.stop()
        async with asyncio.timeout(60):
            await runner
    return Run(load.replies, health_before, health_during, health_after)


def _by_kind(load: Load, phase: str, kinds: list[Request]) -> dict[Request, list[Reply]]:
    found: dict[Request, list[Reply]] = {kind: [] for kind in kinds}
    for reply in load.phase_replies(phase):
        found[reply.request].append(reply)
    return found


def _per_kind(load: Load, phase: str) -> Counter[Request]:
    counts = Counter({kind: 0 for kind in load.requests})
    counts.update(r.request for r in load.phase_replies(phase))
    return counts


async def _health_ok(url: str, token: str, within: float = 30) -> Health:
    """/health once it says ok again (the report may lag a moment behind the requests)."""
    deadline = time.monotonic() + within
    while True:
        found = await health(url, token)
        if found.body["status"] == "ok" or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


def check_run(run: Run, gw: GatewayProcess, pid: int) -> None:
    """What every fault must satisfy (see the module docstring)."""
    print(f"\n{len(run.replies)} answers: {summary(run.replies)}")  # shown by pytest -s
    during = run.health_during
    print(f"health during the fault: {during.detailed_status} {during.detailed}")
    bad = [(r, why) for r in run.replies if (why := malformed(r)) is not None]
    assert not bad, f"{len(bad)} malformed answers, e.g. {bad[0][0].describe()}: {bad[0][1]}"
    # Stale when allowed: a read that asked for stale-if-error never saw the fault.
    for reply in run.phase("down"):
        if reply.request.stale_ok:
            assert reply.status == 200, reply.describe()
    # Service resumed: everything sent after the first fresh answers succeeded, fresh.
    back = run.phase("back")
    assert back, summary(run.replies)
    assert all(r.status == 200 and r.cache != "STALE" for r in back), summary(back)
    assert run.health_before.status == 200
    assert run.health_before.body == {"status": "ok"}
    assert run.health_after.body == {"status": "ok"}, run.health_after.detailed
    assert gw.alive(), "the gateway process died"
    assert gw.pid == pid
    assert not gw.crashes(), "\n".join(gw.crashes()[:5])


def _upstream_failure(reply: Reply) -> bool:
    return reply.status >= 500 or reply.cache == "STALE"


def _envelope_errors(reply: Reply) -> list[dict[str, Any]]:
    data = reply.json()
    assert isinstance(data, dict)
    errors: list[dict[str, Any]] = data["errors"]
    return errors


SUITE_VERSIONS = [("trixie", "v0.0.42"), ("forky", "v0.0.45")]
by_suite = pytest.mark.parametrize(
    ("suite_name", "version"), SUITE_VERSIONS, ids=[f"{s}-{v}" for s, v in SUITE_VERSIONS]
)


@by_suite
@pytest.mark.timeout(300)
async def test_slurmrestd_killed_and_restarted_under_load(
    lab: Lab, tmp_path: Path, suite_name: str, version: str
) -> None:
    suite = lab.suites[suite_name]
    with private_restd(suite, tmp_path) as restd, gateway(suite, tmp_path, restd.url) as gw:
        pid = gw.pid

        async def kill() -> None:
            assert restd.is_slurmrestd(), "the PID we signal is not slurmrestd"
            await asyncio.to_thread(restd.kill)

        async def restart() -> None:
            await asyncio.to_thread(restd.start)

        run = await fault_run(
            gw, version, tmp_path, start_fault=kill, end_fault=restart, fault_seen=_upstream_failure
        )
        check_run(run, gw, pid)
        down = run.phase("down")
        failed = [r for r in down if r.status >= 500]
        assert failed, summary(down)
        # Nothing answers on the port: the gateway's own 502, saying so.
        assert {r.status for r in failed} <= {502, 504}, summary(failed)
        for reply in failed:
            # Cached routes say what the cache did, errors included (ping is never cached).
            assert reply.cache == ("" if reply.request.path.endswith("/ping/") else "MISS")
            (error,) = _envelope_errors(reply)
            assert error["error"] in (
                "Upstream slurmrestd unavailable",
                "Upstream slurmrestd timed out",
            )
            assert error["description"]
        assert any(r.cache == "STALE" for r in down), summary(down)
        during = run.health_during
        assert (during.status, during.body) == (503, {"status": "failing"})
        assert during.detailed["checks"]["slurmctld"]["status"] == "failing"


@pytest.mark.parametrize(("suite_name", "version"), [("forky", "v0.0.45")])
@pytest.mark.timeout(300)
async def test_upstream_hanging(lab: Lab, tmp_path: Path, suite_name: str, version: str) -> None:
    suite = lab.suites[suite_name]
    with private_restd(suite, tmp_path) as restd:
        async with hanging_proxy("127.0.0.1", restd.port) as proxy:
            with gateway(suite, tmp_path, proxy.url) as gw:
                pid = gw.pid

                async def hang() -> None:
                    proxy.hanging = True

                async def answer() -> None:
                    proxy.hanging = False

                run = await fault_run(
                    gw,
                    version,
                    tmp_path,
                    start_fault=hang,
                    end_fault=answer,
                    fault_seen=_upstream_failure,
                )
                check_run(run, gw, pid)
        down = run.phase("down")
        failed = [r for r in down if r.status >= 500]
        assert failed, summary(down)
        assert {r.status for r in failed} == {504}, summary(failed)
        for reply in failed:
            (error,) = _envelope_errors(reply)
            assert error["error"] == "Upstream slurmrestd timed out"
            assert f"{UPSTREAM_TIMEOUT:g} s" in error["description"]
            # Bounded by upstream.timeout, not by the client's patience.
            assert reply.seconds < UPSTREAM_TIMEOUT + 5, reply.describe()
        assert any(r.cache == "STALE" for r in down), summary(down)
        during = run.health_during
        assert (during.status, during.body) == (503, {"status": "failing"})
        assert "no answer within" in during.detailed["checks"]["slurmctld"]["error"]


async def _daemon_stopped(
    lab: Lab, tmp_path: Path, suite_name: str, version: str, *, daemon: str, namespace: str
) -> Run:
    """A fault run while the lab's ``daemon`` is stopped; the fault is seen once a request under
    ``namespace`` fails upstream. The lab is healthy again afterwards, whatever happened."""
    suite = lab.suites[suite_name]
    try:
        with private_restd(suite, tmp_path) as restd, gateway(suite, tmp_path, restd.url) as gw:
            pid = gw.pid
            async with lab_outage(suite_name, daemon) as outage:
                run = await fault_run(
                    gw,
                    version,
                    tmp_path,
                    start_fault=outage.start,
                    end_fault=outage.end,
                    fault_seen=lambda r: namespace in r.request.path and _upstream_failure(r),
                )
            check_run(run, gw, pid)
    finally:
        assert await asyncio.to_thread(wait_lab_healthy, suite_name), "the lab did not recover"
    assert outage.seconds < MAX_OUTAGE, outage.seconds
    return run


@pytest.mark.parametrize(("suite_name", "version"), [("trixie", "v0.0.42")])
@pytest.mark.timeout(300)
async def test_slurmctld_stopped(lab: Lab, tmp_path: Path, suite_name: str, version: str) -> None:
    run = await _daemon_stopped(
        lab, tmp_path, suite_name, version, daemon="slurmctld", namespace="/slurm/"
    )
    down = [r for r in run.phase("down") if "/slurm/" in r.request.path]
    failed = [r for r in down if r.status >= 500]
    assert failed, summary(down)
    assert any(r.cache == "STALE" for r in down), summary(down)
    during = run.health_during
    assert (during.status, during.body) == (503, {"status": "failing"}), during.detailed
    assert during.detailed["checks"]["slurmctld"]["status"] == "failing"


@pytest.mark.parametrize(("suite_name", "version"), [("forky", "v0.0.45")])
@pytest.mark.timeout(300)
async def test_slurmdbd_stopped(lab: Lab, tmp_path: Path, suite_name: str, version: str) -> None:
    run = await _daemon_stopped(
        lab, tmp_path, suite_name, version, daemon="slurmdbd", namespace="/slurmdb/"
    )
    down = run.phase("down")
    # slurmctld's side goes on. (Not partitions: slurmrestd 26.05 answers them with a 500 while
    # slurmdbd is down, its own envelope with the partitions and errors[], relayed as it is.)
    for tail in ("nodes/", "ping/"):
        path = f"/slurm/{version}/{tail}"
        assert all(r.status == 200 for r in down if r.request.path == path), summary(down)
    failed = [r for r in down if "/slurmdb/" in r.request.path and r.status >= 500]
    assert failed, summary(down)
    for reply in failed:
        # slurmrestd's own answer, passed through: it says what failed.
        (error,) = _envelope_errors(reply)
        assert error["error"] == "Unable to connect to database", reply.describe()
    assert any(r.cache == "STALE" for r in down if "/slurmdb/" in r.request.path), summary(down)
    during = run.health_during
    assert (during.status, during.body) == (200, {"status": "degraded"}), during.detailed
    assert during.detailed["checks"]["slurmdbd"]["status"] == "failing"
    assert during.detailed["checks"]["slurmctld"]["status"] == "ok"


class LabOutage:
    """Start and end an outage of a lab daemon from async code (the work runs in a thread)."""

    def __init__(self, suite_name: str, key: str) -> None:
        self.suite_name = suite_name
        self.key = key
        self._stack = contextlib.ExitStack()
        self.seconds = 0.0

    async def start(self) -> None:
        outage = await asyncio.to_thread(
            self._stack.enter_context, daemon_stopped(self.suite_name, self.key)
        )
        self._outage = outage

    async def end(self) -> None:
        await asyncio.to_thread(self._stack.close)
        self.seconds = self._outage.seconds


@contextlib.asynccontextmanager
async def lab_outage(suite_name: str, key: str) -> AsyncIterator[LabOutage]:
    """A :class:`LabOutage` that is always ended, whatever the block raised."""
    outage = LabOutage(suite_name, key)
    try:
        yield outage
    finally:
        await asyncio.to_thread(outage._stack.close)


@pytest.mark.timeout(120)
def test_unreadable_requests_leave_no_traceback(lab: Lab, tmp_path: Path) -> None:
    # Found by the fuzzing: aiohttp logs each request it cannot parse as an ERROR with a
    # traceback, which anyone could repeat to flood the log (server/ops/logs.py now shortens them).
    suite = lab.suites["forky"]
    requests = [
        b"GET /slurm/v0.0.45/node/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /slurm/v0.0.45/nodes/?a=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"DELETE /slurm/v0.0.45/job/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nabc\r\n0\r\n\r\n",
    ]
    with gateway(suite, tmp_path, suite.url) as gw:
        for raw in requests:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
                conn.sendall(raw)
                assert conn.recv(64).split(b" ")[1] == b"400"
        assert gw.alive()
        time.sleep(0.2)  # the log line is written after the answer
        assert not gw.crashes(), gw.crashes()[0]
        log = gw.log.read_text()
        assert "WARNING aiohttp.server: unreadable HTTP request from 127.0.0.1 answered 400" in log
