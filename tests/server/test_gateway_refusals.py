"""Every way of failing to authenticate, through the real gateway in front of the real slurmrestd.

Each refusal is answered by the gateway with the right status, and nothing reaches slurmrestd:
its own log (one ``operations_router`` line per request it receives) does not grow. A request that
is let through right after each refusal grows it by exactly one line, so the method is proven to see
requests, and the log is read only once that line is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.cli.commands import main as cli
from tests.lab.env import Lab, LabSuite
from tests.server.gateway import create_token, gateway_settings, slurmrestd_requests

VERSION = "v0.0.45"
PING = f"/slurm/{VERSION}/ping/"


@pytest.fixture
def forky(lab: Lab) -> LabSuite:
    return lab.suites["forky"]


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return tmp_path / "tokens.toml"


@pytest.fixture
async def gateway(
    forky: LabSuite, tokens_file: Path, alice: str
) -> AsyncIterator[TestClient[Any, Any]]:
    munge = {
        "enabled": True,
        "socket": str(forky.root / "run/munge/munge.socket.2"),
        "passwd_file": str(forky.root / "etc/passwd"),
        "max_age": 2,
        "scopes": ["slurm:read"],
    }
    settings = gateway_settings(forky, "http", tokens_file, auth={"munge": munge})
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
def alice(tokens_file: Path) -> str:
    return create_token(tokens_file, "alice", extra=("--name", "alice-1"))


async def refused(
    client: TestClient[Any, Any],
    suite: LabSuite,
    headers: Mapping[str, str],
    status: int,
    *,
    allowed: Mapping[str, str],
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """Send a request that must be refused; prove slurmrestd never saw it. Returns the body."""
    before = slurmrestd_requests(suite)
    url = client.make_url(PING)
    if session is None:
        response = await client.session.get(url, headers=headers)
    else:
        response = await session.get(url, headers=headers)
    body: dict[str, Any] = json.loads(await response.read())
    assert response.status == status, body
    assert response.headers["Content-Type"] == "application/json"
    # A request that is let through: slurmrestd logs it, and only it.
    ok = await client.get(PING, headers=allowed)
    assert ok.status == 200
    for _ in range(50):
        if slurmrestd_requests(suite) > before:
            break
        await asyncio.sleep(0.1)
    assert slurmrestd_requests(suite) == before + 1
    error = body["errors"][0]
    assert set(error) == {"error", "error_number", "description", "source"}
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_credential(gateway: TestClient[Any, Any], forky: LabSuite, alice: str) -> None:
    before = slurmrestd_requests(forky)
    response = await gateway.get(PING)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    await refused(gateway, forky, {}, 401, allowed=bearer(alice))
    assert slurmrestd_requests(forky) == before + 1


async def test_wrong_token(gateway: TestClient[Any, Any], forky: LabSuite, alice: str) -> None:
    # Right shape, one character changed; then a Slurm JWT, which slurmrestd itself would take.
    wrong = alice[:-2] + ("A" if alice[-2] != "A" else "B") + alice[-1]
    await refused(gateway, forky, bearer(wrong), 401, allowed=bearer(alice))
    await refused(gateway, forky, bearer(forky.token("slurm")), 401, allowed=bearer(alice))
    await refused(
        gateway, forky, {"X-SLURM-USER-TOKEN": forky.token("slurm")}, 401, allowed=bearer(alice)
    )


async def test_token_revoked_while_the_gateway_runs(
    gateway: TestClient[Any, Any], forky: LabSuite, tokens_file: Path, alice: str
) -> None:
    bob = create_token(tokens_file, "bob", extra=("--name", "bob-1"))
    os.kill(os.getpid(), signal.SIGHUP)  # the watcher would see it within a second anyway
    for _ in range(50):
        if (await gateway.get(PING, headers=bearer(bob))).status == 200:
            break
        await asyncio.sleep(0.1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["token", "revoke", "bob-1", "--tokens-file", str(tokens_file)]) == 0
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(50):
        if (await gateway.get(PING, headers=bearer(bob))).status == 401:
            break
        await asyncio.sleep(0.1)
    await refused(gateway, forky, bearer(bob), 401, allowed=bearer(alice))


async def test_expired_token(
    gateway: TestClient[Any, Any], forky: LabSuite, tokens_file: Path, alice: str
) -> None:
    brief = create_token(tokens_file, "bob", extra=("--name", "brief", "--expires", "1s"))
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(1.2)
    body = await refused(gateway, forky, bearer(brief), 401, allowed=bearer(alice))
    assert "expired" in body["errors"][0]["description"]


async def test_user_name_that_differs_from_the_tokens_user(
    gateway: TestClient[Any, Any], forky: LabSuite, alice: str
) -> None:
    for headers in (
        {"X-SLURM-USER-TOKEN": alice, "X-SLURM-USER-NAME": "bob"},
        {**bearer(alice), "X-SLURM-USER-NAME": "root"},
    ):
        await refused(gateway, forky, headers, 401, allowed=bearer(alice))
    # The same name as the token's user is fine, as slurmrestd clients send it.
    same = {"X-SLURM-USER-TOKEN": alice, "X-SLURM-USER-NAME": "alice"}
    assert (await gateway.get(PING, headers=same)).status == 200


async def test_both_headers(gateway: TestClient[Any, Any], forky: LabSuite, alice: str) -> None:
    both = {**bearer(alice), "X-SLURM-USER-TOKEN": alice}
    await refused(gateway, forky, both, 401, allowed=bearer(alice))


async def munge_credential(suite: LabSuite, user: str, ttl: int = 2) -> str:
    done = await asyncio.to_thread(suite.run, "munge", "-n", "-t", str(ttl), user=user)
    return done.stdout.strip()


async def test_munge_credential_is_accepted_once(
    gateway: TestClient[Any, Any], forky: LabSuite, alice: str
) -> None:
    credential = {"Authorization": f"MUNGE {await munge_credential(forky, 'bob')}"}
    response = await gateway.get(PING, headers=credential)
    assert response.status == 200, await response.text()
    await refused(gateway, forky, credential, 401, allowed=bearer(alice))


async def test_munge_credential_too_old(
    gateway: TestClient[Any, Any], forky: LabSuite, alice: str
) -> None:
    credential = {"Authorization": f"MUNGE {await munge_credential(forky, 'bob')}"}
    await asyncio.sleep(2.5)  # max_age is 2 s in this gateway
    await refused(gateway, forky, credential, 401, allowed=bearer(alice))


async def test_munge_credential_from_another_address(
    gateway: TestClient[Any, Any], forky: LabSuite, alice: str
) -> None:
    # The lab's munged writes origin 127.0.0.1; this client connects from 127.0.0.2.
    credential = {"Authorization": f"MUNGE {await munge_credential(forky, 'bob')}"}
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as elsewhere:
        await refused(gateway, forky, credential, 401, allowed=bearer(alice), session=elsewhere)
