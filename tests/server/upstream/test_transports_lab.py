"""Every transport against the real slurmrestd of each lab suite, as SlurmUser acting for alice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from slurmgate.generated import ROUTES
from slurmgate.server.config import SlurmUserTokenSettings, UpstreamSettings
from slurmgate.server.upstream.factory import make_transport
from slurmgate.server.upstream.token import SlurmUserToken
from slurmgate.server.upstream.transport import Transport, UpstreamRequest, UpstreamResponse
from tests.lab.env import Lab, LabSuite, suite_versions
from tests.server.upstream.fakes import KINDS, Kind

pytestmark = pytest.mark.lab

SUITE_VERSIONS = suite_versions()
IDS = [f"{suite}-{version}" for suite, version in SUITE_VERSIONS]
NEWEST = {suite: version for suite, version in SUITE_VERSIONS}  # suite_versions() is oldest first


def upstream_settings(kind: Kind, suite: LabSuite) -> UpstreamSettings:
    """How the gateway would be configured to reach ``suite`` with ``kind``."""
    if kind == "http":
        return UpstreamSettings(transport="http", url=suite.url, timeout=60)
    if kind == "unix":
        return UpstreamSettings(transport="unix", socket=suite.unix_socket, timeout=60)
    return UpstreamSettings(transport="inetd", command=suite.inetd_command, timeout=60)


class Caller:
    """Sends requests to a suite through one transport, as SlurmUser acting for a user."""

    def __init__(self, transport: Transport, token: SlurmUserToken) -> None:
        self.transport = transport
        self.token = token

    async def send(
        self, method: str, target: str, *, user: str = "alice", body: object = None
    ) -> tuple[UpstreamResponse, Any]:
        headers = [("X-SLURM-USER-TOKEN", await self.token.get()), ("X-SLURM-USER-NAME", user)]
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            headers.append(("Content-Type", "application/json"))
        request = UpstreamRequest(method, target, tuple(headers), data)
        response = await self.transport.send(request)
        return response, json.loads(response.body)


@contextlib.asynccontextmanager
async def caller(kind: Kind, suite: LabSuite) -> AsyncIterator[Caller]:
    token = SlurmUserToken.from_settings(
        SlurmUserTokenSettings(source="jwt_key", jwt_key=suite.jwt_key)
    )
    transport = make_transport(upstream_settings(kind, suite))
    try:
        yield Caller(transport, token)
    finally:
        await transport.close()
        await token.stop()


def checks(version: str, lab: Lab) -> list[tuple[str, str]]:
    """(target, user): slurmctld's and slurmdbd's ping; before v0.0.42, which has no slurmdbd ping,
    slurmdbd's diag (as an administrator: slurmdbd refuses its statistics to others)."""
    paths = {route.path for route in ROUTES[version]}
    slurmdb = f"/slurmdb/{version}/ping/"
    if slurmdb not in paths:
        return [(f"/slurm/{version}/ping/", "alice"), (f"/slurmdb/{version}/diag/", lab.admin_user)]
    return [(f"/slurm/{version}/ping/", "alice"), (slurmdb, "alice")]


def responding(ping: dict[str, Any]) -> bool:
    # v0.0.40 and v0.0.41 report "pinged": "UP"; later versions "responding": true.
    return bool(ping.get("responding", ping.get("pinged") == "UP"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("suite_name", "version"), SUITE_VERSIONS, ids=IDS)
async def test_ping_through_each_transport(
    lab: Lab, suite_name: str, version: str, kind: Kind
) -> None:
    suite = lab.suites[suite_name]
    async with caller(kind, suite) as call:
        for target, user in checks(version, lab):
            response, body = await call.send("GET", target, user=user)
            assert response.status == 200, body.get("errors")
            assert body["errors"] == []
            assert body["meta"]["slurm"]["cluster"] == suite.cluster
            assert response.header("Content-Type") == "application/json"
            assert int(response.header("Content-Length") or -1) == len(response.body)
            # slurmrestd answers ping even with a bad token; the daemons' verdict is in the body.
            assert all(responding(ping) for ping in body.get("pings", [])), body["pings"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("suite_name", sorted(NEWEST))
async def test_submit_and_cancel_a_job_through_each_transport(
    lab: Lab, suite_name: str, kind: Kind
) -> None:
    suite = lab.suites[suite_name]
    version = NEWEST[suite_name]
    name = f"sg-{kind}"
    job = {
        "name": name,
        "script": "#!/bin/sh\nsleep 60\n",
        "current_working_directory": "/",
        "environment": ["PATH=/usr/bin:/bin"],
        "hold": True,
    }
    async with caller(kind, suite) as call:
        response, body = await call.send("POST", f"/slurm/{version}/job/submit", body={"job": job})
        assert response.status == 200, body.get("errors")
        job_id = int(body["job_id"])
        try:
            seen = await asyncio.to_thread(
                suite.run, "squeue", "-h", "-j", str(job_id), "-o", "%u|%j|%T"
            )
            assert seen.stdout.split() == [f"alice|{name}|PENDING"]
            response, body = await call.send("DELETE", f"/slurm/{version}/job/{job_id}")
            assert response.status == 200, body.get("errors")
            state = await asyncio.to_thread(
                suite.run, "squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T"
            )
            assert state.stdout.split() == ["CANCELLED"]
        finally:
            await asyncio.to_thread(suite.run, "scancel", str(job_id))


@pytest.mark.parametrize("kind", KINDS)
async def test_slurmrestds_refusal_passes_through(lab: Lab, kind: Kind) -> None:
    suite = lab.suites["forky"]
    transport = make_transport(upstream_settings(kind, suite))
    request = UpstreamRequest("GET", f"/slurm/{NEWEST['forky']}/ping/", ())
    try:
        response = await transport.send(request)
    finally:
        await transport.close()
    assert (response.status, response.body) == (401, b"Authentication failure")


@pytest.mark.parametrize("kind", KINDS)
async def test_the_answer_after_an_error_is_the_requests_own(lab: Lab, kind: Kind) -> None:
    # slurmrestd 26.05.5 sends a second response after each error answer: the next request on
    # the transport must get its own answer, never that one.
    suite = lab.suites["forky"]
    target = f"/slurm/{NEWEST['forky']}/ping/"
    async with caller(kind, suite) as call:
        refused = await call.transport.send(UpstreamRequest("GET", target, ()))
        response, body = await call.send("GET", target)
        missing = await call.transport.send(UpstreamRequest("GET", target + "nowhere/", ()))
        again, _ = await call.send("GET", target)
    assert (refused.status, refused.body) == (401, b"Authentication failure")
    assert response.status == 200, body.get("errors")
    assert body["meta"]["slurm"]["cluster"] == suite.cluster
    assert missing.status >= 400
    assert again.status == 200
