"""``GET /health`` against a scripted fake slurmrestd: what anonymous callers and the scope's
holders see, each check ok and failing, the status codes, shared and reused runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from slurmgate.server.keys import HEALTH
from slurmgate.server.ops.health import HealthMonitor, judge_pings
from tests.server.fake_gateway import Gateway, V, free_port, ping_body, start

PING = f"/slurm/{V}/ping/"
DB_PING = f"/slurmdb/{V}/ping/"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with start(tmp_path) as gateway:
        yield gateway


async def health(gw: Gateway, user: str | None = "ops") -> tuple[int, dict[str, Any]]:
    response = await gw.get("/health", user=user)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-ID"]
    return response.status, json.loads(await response.read())


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (ping_body(True), "ok"),
        (ping_body(True, True), "ok"),
        (ping_body(True, False), "degraded"),
        (ping_body(False, True), "degraded"),
        (ping_body(False), "failing"),
        (ping_body(True, pinged=True), "ok"),
        (ping_body(False, pinged=True), "failing"),
        (b'{"pings": [{"hostname": "c", "responding": true, "pinged": "DOWN"}]}', "failing"),
        (b'{"pings": [], "errors": []}', "failing"),
        (b'{"pings": [{"responding": true}], "errors": [{"error": "boom"}]}', "failing"),
        (b'{"pings": "nope"}', "failing"),
        (b"[]", "failing"),
        (b"<html>", "failing"),
    ],
)
def test_judge_pings(body: bytes, status: str) -> None:
    assert judge_pings(body)["status"] == status


async def test_anonymous_callers_get_the_status_only(gw: Gateway) -> None:
    assert await health(gw, user=None) == (200, {"status": "ok"})


async def test_the_scope_shows_every_check(gw: Gateway) -> None:
    status, body = await health(gw)
    assert status == 200
    assert body["status"] == "ok"
    assert body["checked_at"].endswith("Z")
    checks = body["checks"]
    assert set(checks) == {"slurmctld", "slurmdbd", "cache", "slurm_user_token"}
    assert {name: check["status"] for name, check in checks.items()} == dict.fromkeys(checks, "ok")
    ctl = checks["slurmctld"]
    assert ctl["version"] == V
    assert ctl["controllers"] == [
        {"hostname": "ctl0", "primary": True, "responding": True, "latency": 500}
    ]
    assert ctl["seconds"] >= 0
    assert checks["slurmdbd"]["version"] == V
    assert checks["cache"]["backend"] == "memory"
    token = checks["slurm_user_token"]
    assert token["source"].startswith("jwt_key ")
    assert token["renewal_failures"] == 0
    assert 0 < token["expires_in"] <= 600
    # both pings went upstream as SlurmUser: no X-SLURM-USER-NAME
    assert gw.upstream.calls[PING] == gw.upstream.calls[DB_PING] == 1
    assert all("X-SLURM-USER-NAME" not in h for h in gw.upstream.headers)


async def test_credentials_that_are_sent_are_checked(gw: Gateway) -> None:
    bad = await gw.client.get("/health", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status == 401
    assert "WWW-Authenticate" in bad.headers
    forbidden = await gw.get("/health", user="alice")  # a token without slurmgate:health
    assert forbidden.status == 403
    (error,) = json.loads(await forbidden.read())["errors"]
    assert error["source"] == "scope:slurmgate:health"


async def test_no_controller_responding_is_failing(gw: Gateway) -> None:
    gw.upstream.answers[PING] = (200, ping_body(False))
    assert await health(gw, user=None) == (503, {"status": "failing"})


async def test_slurmdbd_down_is_degraded(gw: Gateway) -> None:
    gw.upstream.answers[DB_PING] = (200, ping_body(False))
    status, body = await health(gw)
    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["slurmdbd"]["status"] == "failing"
    assert body["checks"]["slurmctld"]["status"] == "ok"


async def test_a_backup_controller_down_is_degraded(gw: Gateway) -> None:
    gw.upstream.answers[PING] = (200, ping_body(True, False))
    status, body = await health(gw)
    assert (status, body["status"], body["checks"]["slurmctld"]["status"]) == (
        200,
        "degraded",
        "degraded",
    )


async def test_degraded_may_answer_503_and_failing_always_does(tmp_path: Path) -> None:
    async with start(tmp_path, health={"degraded_status": 503, "max_age": 0}) as gw:
        gw.upstream.answers[DB_PING] = (500, b"{}")
        assert await health(gw, user=None) == (503, {"status": "degraded"})
        gw.upstream.answers[PING] = (500, b"{}")
        status, body = await health(gw)
        assert (status, body["status"]) == (503, "failing")
        assert body["checks"]["slurmctld"]["error"] == "the ping answered 500"


async def test_slurmrestd_unreachable_is_failing(tmp_path: Path) -> None:
    async with start(tmp_path, upstream_url=f"http://127.0.0.1:{free_port()}") as gw:
        status, body = await health(gw)
        assert (status, body["status"]) == (503, "failing")
        assert body["checks"]["slurmctld"]["status"] == "failing"
        assert "error" in body["checks"]["slurmctld"]
        assert body["checks"]["slurm_user_token"]["status"] == "ok"


async def test_a_ping_slower_than_the_timeout_fails(tmp_path: Path) -> None:
    async with start(tmp_path, health={"timeout": 0.2}) as gw:
        gw.upstream.held.add(DB_PING)  # never released while the check waits
        status, body = await health(gw)
        assert (status, body["status"]) == (200, "degraded")
        assert body["checks"]["slurmdbd"]["error"] == "no answer within health.timeout (0.2 s)"


async def test_an_unreachable_redis_is_degraded(tmp_path: Path) -> None:
    redis = {"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    async with start(tmp_path, cache=redis) as gw:
        status, body = await health(gw)
        assert (status, body["status"]) == (200, "degraded")
        assert body["checks"]["cache"]["status"] == "failing"
        assert body["checks"]["cache"]["backend"] == "redis"


async def test_the_cache_off_is_ok(tmp_path: Path) -> None:
    async with start(tmp_path, cache={"backend": "off"}) as gw:
        status, body = await health(gw)
        assert status == 200
        cache = body["checks"]["cache"]
        assert (cache["status"], cache["backend"]) == ("ok", "off")


async def test_no_slurm_user_token_is_failing(tmp_path: Path) -> None:
    async with start(tmp_path, slurm_user_token={"jwt_key": str(tmp_path / "missing.key")}) as gw:
        status, body = await health(gw)
        assert (status, body["status"]) == (503, "failing")
        token = body["checks"]["slurm_user_token"]
        assert token["status"] == "failing"
        assert token["renewal_failures"] >= 1
        assert "missing.key" in token["error"]
        assert "expires_in" not in token
        assert "SlurmUser token" in body["checks"]["slurmctld"]["error"]


async def test_concurrent_requests_share_one_run(tmp_path: Path) -> None:
    async with start(tmp_path, health={"max_age": 0}) as gw:
        monitor = gw.client.app[HEALTH]
        gw.upstream.held.add(PING)
        first = asyncio.create_task(monitor.report())
        await gw.upstream.arrived.wait()  # the first run's ping is under way
        second = asyncio.create_task(monitor.report())
        await asyncio.sleep(0)  # one turn: the second request joins the run under way
        gw.upstream.release.set()
        one, two = await asyncio.gather(first, second)
        assert one is two
        assert gw.upstream.calls[PING] == 1
        # max_age 0: the next request runs the checks again
        await monitor.report()
        assert gw.upstream.calls[PING] == 2


async def test_a_recent_report_is_reused(tmp_path: Path) -> None:
    async with start(tmp_path, health={"max_age": 300}) as gw:
        for _ in range(3):
            assert await health(gw, user=None) == (200, {"status": "ok"})
        assert gw.upstream.calls[PING] == 1


async def test_a_client_that_goes_away_does_not_cancel_the_run(tmp_path: Path) -> None:
    async with start(tmp_path, health={"max_age": 300}) as gw:
        monitor = gw.client.app[HEALTH]
        gw.upstream.held.add(PING)
        gone = asyncio.create_task(monitor.report())
        await gw.upstream.arrived.wait()
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        stays = asyncio.create_task(monitor.report())
        await asyncio.sleep(0)
        gw.upstream.release.set()
        assert (await stays).status == "ok"
        assert gw.upstream.calls[PING] == 1


async def test_a_run_that_fails_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start(tmp_path, health={"max_age": 300}) as gw:
        monitor = gw.client.app[HEALTH]
        real = HealthMonitor._token
        failures = iter([RuntimeError("a bug in a check")])

        def token_once(self: HealthMonitor) -> dict[str, Any]:
            for error in failures:
                raise error
            return real(self)

        monkeypatch.setattr(HealthMonitor, "_token", token_once)
        gw.upstream.held.add(PING)
        first = asyncio.create_task(monitor.report())
        await gw.upstream.arrived.wait()
        second = asyncio.create_task(monitor.report())
        await asyncio.sleep(0)  # one turn: the second caller joins the run under way
        gw.upstream.release.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert [type(result) for result in results] == [RuntimeError, RuntimeError]
        assert gw.upstream.calls[PING] == 1
        assert (await monitor.report()).status == "ok"  # a new run, not the failure again
        assert gw.upstream.calls[PING] == 2


async def test_close_cancels_the_run_under_way(tmp_path: Path) -> None:
    async with start(tmp_path, health={"max_age": 300}) as gw:
        monitor = gw.client.app[HEALTH]
        gw.upstream.held.add(PING)
        waiting = asyncio.create_task(monitor.report())
        await gw.upstream.arrived.wait()
        async with asyncio.timeout(5):
            await monitor.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gw.upstream.release.set()
        assert (await monitor.report()).status == "ok"  # the cancelled run was not kept
        assert gw.upstream.calls[PING] == 2
