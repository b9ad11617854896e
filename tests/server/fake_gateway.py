"""The gateway in front of a scripted fake slurmrestd, for the observability tests (metrics, access
log, health): pings, answers per path, requests held until an event is set."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.config import parse_settings
from tests.server.gateway import create_token

__all__ = ["OK_BODY", "FakeSlurmrestd", "Gateway", "V", "free_port", "ping_body", "start"]

V = "v0.0.45"
KEY = b"k" * 64
OK_BODY = b'{"nodes": [], "meta": {}, "errors": [], "warnings": []}'


def ping_body(*responding: bool, pinged: bool = False) -> bytes:
    """A ping answer listing one controller per item of ``responding``."""
    pings: list[dict[str, object]] = []
    for index, up in enumerate(responding):
        ping: dict[str, object] = {
            "hostname": f"ctl{index}",
            "responding": up,
            "latency": 500,
            "primary": index == 0,
        }
        if pinged:
            ping["pinged"] = "UP" if up else "DOWN"
        pings.append(ping)
    return json.dumps({"pings": pings, "meta": {}, "errors": [], "warnings": []}).encode()


def free_port() -> int:
    """A loopback port nobody listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FakeSlurmrestd:
    """Answers OK_BODY (pings: every controller responding) unless told otherwise."""

    calls: Counter[str] = field(default_factory=Counter)
    #: path -> (status, body) to answer instead
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: requests to these paths wait for ``release``; ``arrived`` is set when one does
    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    #: every request's headers, to check what reached slurmrestd
    headers: list[dict[str, str]] = field(default_factory=list)
    #: every request's path and query, in arrival order
    targets: list[str] = field(default_factory=list)
    #: requests to ``held`` paths being answered now, and the most at once
    in_flight: int = 0
    peak: int = 0
    #: how many of the next GET /openapi/v3 (the version discovery) answer 503
    openapi_refusals: int = 0
    #: GET /openapi/v3 requests received
    openapi_calls: int = 0
    #: when set, a GET /openapi/v3 that is not refused waits for it before answering
    openapi_gate: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/openapi/v3":
            self.openapi_calls += 1
            if self.openapi_refusals:
                self.openapi_refusals -= 1
                return web.Response(status=503, text="starting")
            if self.openapi_gate is not None:
                await self.openapi_gate.wait()
            return web.json_response({"paths": {f"/slurm/{V}/ping/": {}}})
        self.calls[request.path] += 1
        self.headers.append(dict(request.headers))
        self.targets.append(request.path_qs)
        if request.path in self.held:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.arrived.set()
            try:
                await self.release.wait()
            finally:
                self.in_flight -= 1
        default = ping_body(True) if request.path.endswith("/ping/") else OK_BODY
        status, body = self.answers.get(request.path, (200, default))
        return web.Response(status=status, body=body, content_type="application/json")


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    upstream: FakeSlurmrestd
    tokens: dict[str, str]

    async def get(self, path: str, user: str | None = "alice", **headers: str) -> ClientResponse:
        """GET ``path`` with ``user``'s token (None: no credentials); the body is read."""
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        response = await self.client.get(path, headers=headers)
        await response.read()
        return response


@asynccontextmanager
async def start(
    tmp_path: Path,
    *,
    upstream_url: str | None = None,
    before: Callable[[web.Application, FakeSlurmrestd], None] | None = None,
    **sections: Mapping[str, object],
) -> AsyncIterator[Gateway]:
    """The gateway in front of a fresh FakeSlurmrestd (or of ``upstream_url``); ``before`` is
    called with the app and the fake before either starts answering.

    Tokens: alice (slurm:read, slurm:jobs:manage), ops (slurmgate:metrics, slurmgate:health),
    bob (slurm:read only).
    """
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "alice": create_token(tokens_file, "alice", scopes=("slurm:read", "slurm:jobs:manage")),
        "ops": create_token(tokens_file, "ops", scopes=("slurmgate:metrics", "slurmgate:health")),
        "bob": create_token(tokens_file, "bob", scopes=("slurm:read",)),
    }
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    upstream = FakeSlurmrestd()
    fake = web.Application()
    fake.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(fake, host="127.0.0.1")
    await server.start_server()
    try:
        url = upstream_url or str(server.make_url("")).rstrip("/")
        data: dict[str, Any] = {
            "upstream": {"url": url, "timeout": 30.0},
            "slurm_user_token": {"jwt_key": str(key)},
            "auth": {"tokens_file": str(tokens_file)},
        }
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        settings = parse_settings(data, origin="test")
        app = build_app(settings)
        if before is not None:
            before(app, upstream)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield Gateway(client, upstream, tokens)
        finally:
            upstream.release.set()
            await client.close()
    finally:
        await server.close()
