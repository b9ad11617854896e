"""The one request path (server/pipeline/chain.py) on the wire, in front of a fake slurmrestd:
what aiohttp would otherwise answer itself before any middleware goes through the chain too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.server.pipeline.test_cache import NODES, Gateway, start


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for gateway in start(tmp_path):
        yield gateway


async def raw(gw: Gateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as written; the status, headers and body of the first answer."""
    server = gw.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        body = await reader.readexactly(int(headers.get("Content-Length", "0")))
        return status, headers, body
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_unknown_expectation_is_a_417_in_the_envelope(gw: Gateway) -> None:
    token = gw.tokens["alice"]
    request = (
        f"GET {NODES} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Expect: teapot\r\n\r\n"
    ).encode()
    status, headers, body = await raw(gw, request)
    assert status == 417
    assert headers["Content-Type"].startswith("application/json")
    assert "X-Request-ID" in headers  # observed like every answer
    (error,) = json.loads(body)["errors"]
    assert error["error_number"] == 417
    assert error["source"] == "Expect"
    assert gw.upstream.count(NODES) == 0  # nothing forwarded


async def test_100_continue_still_works_for_a_body(gw: Gateway) -> None:
    """A client that waits for 100 Continue before sending its body (curl does, for large
    bodies) gets it, then its answer."""
    headers = {"Authorization": f"Bearer {gw.tokens['alice']}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gw.client.make_url("/slurm/v0.0.45/job/submit"),
            json={"job": {"script": "#!/bin/sh\ntrue", "account": "physics"}},
            headers=headers,
            expect100=True,
        ) as answer,
    ):
        await answer.read()
        assert answer.status == 200
    assert gw.upstream.count("/slurm/v0.0.45/job/submit", "POST") == 1
