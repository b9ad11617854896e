"""The cache step of the gateway against a scripted fake slurmrestd: headers, directives, what is
never cached, invalidation, authorization before the cache, a failing cache backend.

Every feature here is also tested through the real slurmrestd in tests/server/test_cache_lab.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.cache.keys import key_material
from slurmgate.server.config import parse_settings
from slurmgate.server.keys import CACHE
from tests.server.gateway import create_token

V = "v0.0.45"
NODES = f"/slurm/{V}/nodes/"
JOBS = f"/slurm/{V}/jobs/"
KEY = b"k" * 64
OK_BODY = b'{"nodes": [], "meta": {}, "errors": [], "warnings": []}'


@dataclass
class Upstream:
    """A fake slurmrestd that counts requests per (method, path?query, user)."""

    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: path -> (status, body) to answer instead of OK_BODY
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: requests to these paths wait for ``release``
    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/openapi/v3":
            versions = ("v0.0.44", V)
            return web.json_response({"paths": {f"/slurm/{v}/ping/": {} for v in versions}})
        user = request.headers.get("X-SLURM-USER-NAME", "")
        self.calls[(request.method, request.path_qs, user)] += 1
        if request.path in self.held:
            self.waiting += 1
            await self.release.wait()
        status, body = self.answers.get(request.path, (200, OK_BODY))
        return web.Response(status=status, body=body, content_type="application/json")

    def count(self, path: str, method: str = "GET") -> int:
        return sum(n for (m, p, _), n in self.calls.items() if m == method and p == path)


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    upstream: Upstream
    server: TestServer
    tokens: dict[str, str]

    async def get(self, path: str, user: str = "alice", **headers: str) -> ClientResponse:
        headers["Authorization"] = f"Bearer {self.tokens[user]}"
        response = await self.client.get(path, headers=headers)
        await response.read()
        return response


async def start(tmp_path: Path, **cache: object) -> AsyncIterator[Gateway]:
    upstream = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "alice": create_token(tokens_file, "alice", scopes=("slurm:read", "slurm:jobs:manage")),
        "bob": create_token(tokens_file, "bob", scopes=("slurm:read",)),
        "dbonly": create_token(tokens_file, "carol", scopes=("slurmdb:read",)),
    }
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    settings = parse_settings(
        {
            "upstream": {"url": str(server.make_url("")).rstrip("/"), "timeout": 5.0},
            "slurm_user_token": {"jwt_key": str(key)},
            "auth": {"tokens_file": str(tokens_file)},
            "cache": cache,
        },
        origin="test",
    )
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Gateway(client, upstream, server, tokens)
    finally:
        upstream.release.set()
        await client.close()
        await server.close()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for gateway in start(tmp_path):
        yield gateway


def error_of(body: bytes) -> dict[str, Any]:
    (error,) = json.loads(body)["errors"]
    return error  # type: ignore[no-any-return]


async def test_miss_then_hit_with_headers(gw: Gateway) -> None:
    first = await gw.get(NODES)
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Age"] == "0"
    assert first.headers["Cache-Control"] == "max-age=2"  # policy short: fresh 2 s + upstream time
    assert first.headers["X-Cache-Generated-At"].endswith("Z")
    assert float(first.headers["X-Cache-Upstream-Seconds"]) >= 0
    second = await gw.get(NODES)
    assert second.headers["X-Cache"] == "HIT"
    assert await second.read() == await first.read() == OK_BODY
    assert second.headers["Content-Type"] == "application/json"
    assert second.headers["X-Cache-Generated-At"] == first.headers["X-Cache-Generated-At"]
    assert second.headers["Server"] == "slurmgate"
    assert gw.upstream.count(NODES) == 1


async def test_trailing_slash_latest_and_query_order_share_an_entry(gw: Gateway) -> None:
    await gw.get(f"/slurm/{V}/nodes?b=1&a=2")
    assert (await gw.get(f"/slurm/{V}/nodes/?a=2&b=1")).headers["X-Cache"] == "HIT"
    assert (await gw.get("/slurm/latest/nodes?a=2&b=1")).headers["X-Cache"] == "HIT"
    assert (await gw.get(f"/slurm/{V}/nodes?a=2")).headers["X-Cache"] == "MISS"
    assert (await gw.get(NODES, Accept="application/yaml")).headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("header", ["no-cache", "max-age=0", "NO-CACHE, stale-if-error"])
async def test_refresh(gw: Gateway, header: str) -> None:
    await gw.get(NODES)
    refreshed = await gw.get(NODES, **{"Cache-Control": header})
    assert refreshed.headers["X-Cache"] == "MISS"
    assert gw.upstream.count(NODES) == 2
    # the refreshed answer is stored for everyone
    assert (await gw.get(NODES, user="bob")).headers["X-Cache"] == "HIT"
    assert gw.upstream.count(NODES) == 2


async def test_pragma_no_cache_refreshes(gw: Gateway) -> None:
    await gw.get(NODES)
    assert (await gw.get(NODES, Pragma="no-cache")).headers["X-Cache"] == "MISS"


async def test_repeated_cache_control_headers_are_one_list(gw: Gateway) -> None:
    await gw.get(NODES)
    headers = [("Authorization", f"Bearer {gw.tokens['alice']}")]
    headers += [("Cache-Control", "max-age=3600"), ("Cache-Control", "no-cache")]
    response = await gw.client.get(NODES, headers=headers)
    assert response.headers["X-Cache"] == "MISS"  # the second header counts too


async def test_max_age_accepts_older_answers_only_up_to_it(gw: Gateway) -> None:
    await gw.get(NODES)
    assert (await gw.get(NODES, **{"Cache-Control": "max-age=3600"})).headers["X-Cache"] == "HIT"


async def test_no_store_bypasses_and_leaves_the_entry(gw: Gateway) -> None:
    await gw.get(NODES)
    bypass = await gw.get(NODES, **{"Cache-Control": "no-store"})
    assert bypass.headers["X-Cache"] == "BYPASS"
    assert "Age" not in bypass.headers
    assert gw.upstream.count(NODES) == 2
    assert (await gw.get(NODES)).headers["X-Cache"] == "HIT"


async def test_update_time_is_never_cached(gw: Gateway) -> None:
    path = f"{JOBS}?update_time=1700000000"
    for _ in range(3):
        response = await gw.get(path)
        assert response.headers["X-Cache"] == "BYPASS"
    assert gw.upstream.count(f"/slurm/{V}/jobs/?update_time=1700000000") == 3


async def test_routes_with_policy_none_are_not_cached(gw: Gateway) -> None:
    for _ in range(2):
        response = await gw.get(f"/slurm/{V}/ping/")
        assert "X-Cache" not in response.headers
    assert gw.upstream.count(f"/slurm/{V}/ping/") == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"errors": [{"error": "boom"}]}'),
        (404, b'{"errors": [{"error": "no such job"}]}'),
        (200, b'{"nodes": [], "errors": [{"error": "partial"}]}'),
    ],
    ids=["500", "404", "200-with-errors"],
)
async def test_error_answers_are_never_cached(gw: Gateway, status: int, body: bytes) -> None:
    gw.upstream.answers[NODES] = (status, body)
    for _ in range(2):
        response = await gw.get(NODES)
        assert response.status == status
        assert await response.read() == body
        assert response.headers["X-Cache"] == "MISS"
        assert "Age" not in response.headers
    assert gw.upstream.count(NODES) == 2


async def test_stale_if_error_serves_the_last_answer_when_upstream_fails(gw: Gateway) -> None:
    await gw.get(NODES)
    await gw.server.close()  # slurmrestd is gone: connection refused
    failed = await gw.get(NODES, **{"Cache-Control": "no-cache"})
    assert failed.status == 502
    assert failed.headers["X-Cache"] == "MISS"  # like slurmrestd's own errors
    assert error_of(await failed.read())["error"] == "Upstream slurmrestd unavailable"
    stale = await gw.get(NODES, **{"Cache-Control": "no-cache, stale-if-error"})
    assert stale.status == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert await stale.read() == OK_BODY
    assert "Age" in stale.headers


async def test_stale_if_error_on_a_5xx_answer(gw: Gateway) -> None:
    await gw.get(NODES)
    gw.upstream.answers[NODES] = (500, b'{"errors": [{"error": "slurmctld down"}]}')
    stale = await gw.get(NODES, **{"Cache-Control": "max-age=0, stale-if-error=60"})
    assert stale.headers["X-Cache"] == "STALE"
    assert await stale.read() == OK_BODY
    plain = await gw.get(NODES, **{"Cache-Control": "max-age=0"})
    assert plain.status == 500


async def test_stale_if_error_without_a_stored_answer_is_the_error(gw: Gateway) -> None:
    await gw.server.close()
    response = await gw.get(NODES, **{"Cache-Control": "stale-if-error"})
    assert response.status == 502
    assert response.headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("header", ["max-age=soon", "stale-if-error=-5", "=1"])
async def test_malformed_cache_control_is_400_and_changes_nothing(gw: Gateway, header: str) -> None:
    response = await gw.get(NODES, **{"Cache-Control": header})
    assert response.status == 400
    error = error_of(await response.read())
    assert error["source"] == "Cache-Control"
    assert error["description"].startswith("Cache-Control: ")
    assert gw.upstream.count(NODES) == 0


async def test_authorization_comes_before_the_cache(gw: Gateway) -> None:
    await gw.get(NODES)  # stored
    refused = await gw.get(NODES, user="dbonly")
    assert refused.status == 403
    assert "X-Cache" not in refused.headers
    assert error_of(await refused.read())["source"] == "scope:slurm:read"


async def test_a_write_invalidates_its_groups_across_versions(gw: Gateway) -> None:
    other_version = "/slurm/v0.0.44/jobs/"
    await gw.get(JOBS)
    await gw.get(other_version)
    await gw.get(NODES)
    assert (await gw.get(JOBS)).headers["X-Cache"] == "HIT"
    submit = await gw.client.post(
        f"/slurm/{V}/job/submit",
        json={"job": {"script": "#!/bin/sh\ntrue\n", "account": "physics"}},
        headers={"Authorization": f"Bearer {gw.tokens['alice']}"},
    )
    assert submit.status == 200
    assert (await gw.get(JOBS)).headers["X-Cache"] == "MISS"
    assert (await gw.get(other_version)).headers["X-Cache"] == "MISS"
    assert (await gw.get(NODES)).headers["X-Cache"] == "HIT"  # another group


async def test_a_failed_write_still_invalidates(gw: Gateway) -> None:
    await gw.get(JOBS)
    gw.upstream.answers[f"/slurm/{V}/job/submit"] = (500, b'{"errors": [{"error": "x"}]}')
    submit = await gw.client.post(
        f"/slurm/{V}/job/submit",
        json={"job": {"script": "#!/bin/sh\ntrue\n"}},
        headers={"Authorization": f"Bearer {gw.tokens['alice']}"},
    )
    assert submit.status == 500
    assert (await gw.get(JOBS)).headers["X-Cache"] == "MISS"


async def test_concurrent_identical_misses_make_one_upstream_call(gw: Gateway) -> None:
    gw.upstream.held.add(NODES)
    requests = [
        asyncio.create_task(gw.get(NODES, user=("alice", "bob")[i % 2])) for i in range(100)
    ]
    store = gw.client.app[CACHE]
    assert store is not None
    async with asyncio.timeout(30):
        while store.flights.waiting < 100 or gw.upstream.waiting < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    gw.upstream.release.set()
    responses = await asyncio.gather(*requests)
    assert [r.status for r in responses] == [200] * 100
    assert gw.upstream.count(NODES) == 1
    assert store.stats.shared == 99


async def test_per_user_keeps_answers_apart(tmp_path: Path) -> None:
    async for gw in start(tmp_path, per_user=True):
        await gw.get(NODES, user="alice")
        bob = await gw.get(NODES, user="bob")
        assert bob.headers["X-Cache"] == "MISS"
        assert bob.headers["Cache-Control"].startswith("private, max-age=")
        assert (await gw.get(NODES, user="alice")).headers["X-Cache"] == "HIT"
        assert gw.upstream.calls[("GET", NODES, "alice")] == 1
        assert gw.upstream.calls[("GET", NODES, "bob")] == 1


async def test_cache_off_adds_nothing(tmp_path: Path) -> None:
    async for gw in start(tmp_path, backend="off"):
        for _ in range(2):
            assert "X-Cache" not in (await gw.get(NODES)).headers
        assert gw.upstream.count(NODES) == 2


async def test_an_unreachable_redis_means_no_cache_not_errors(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async for gw in start(tmp_path, backend="redis", redis_url=f"redis://127.0.0.1:{port}/0"):
        for _ in range(3):
            response = await gw.get(NODES)
            assert response.status == 200
            assert response.headers["X-Cache"] == "BYPASS"
            assert await response.read() == OK_BODY
        store = gw.client.app[CACHE]
        assert store is not None
        assert store.stats.backend_errors >= 1
        assert gw.upstream.count(NODES) == 3


async def test_a_submission_keeps_single_jobs_but_a_cancel_clears_them(gw: Gateway) -> None:
    one = f"/slurm/{V}/job/42"
    await gw.get(one)
    await gw.get(JOBS)
    auth = {"Authorization": f"Bearer {gw.tokens['alice']}"}
    submit = await gw.client.post(
        f"/slurm/{V}/job/submit", json={"job": {"script": "#!/bin/sh\ntrue\n"}}, headers=auth
    )
    assert submit.status == 200
    assert (await gw.get(JOBS)).headers["X-Cache"] == "MISS"  # the list has a new job
    assert (await gw.get(one)).headers["X-Cache"] == "HIT"  # job 42 did not change
    cancel = await gw.client.delete(one, headers=auth)
    assert cancel.status == 200
    assert (await gw.get(one)).headers["X-Cache"] == "MISS"
    assert (await gw.get(JOBS)).headers["X-Cache"] == "MISS"


async def test_large_answers_are_sent_from_memory_files_unchanged(tmp_path: Path) -> None:
    jobs = [{"job_id": i, "name": "x" * 200, "account": "physics"} for i in range(12_000)]
    body = json.dumps({"jobs": jobs, "meta": {}, "errors": [], "warnings": []}).encode()
    assert len(body) > 2 << 20
    async for gw in start(tmp_path, memory_file_min_bytes=1 << 20):
        gw.upstream.answers[JOBS] = (200, body)
        first = await gw.get(JOBS)
        store = gw.client.app[CACHE]
        assert store is not None
        lookup = await store.lookup(key_material(JOBS, "*/*", None), "jobs")
        hits = await asyncio.gather(*(gw.get(JOBS) for _ in range(20)))
        assert first.headers["X-Cache"] == "MISS"
        assert await first.read() == body
        for hit in hits:
            assert hit.status == 200
            assert hit.headers["X-Cache"] == "HIT"
            assert hit.headers["Content-Length"] == str(len(body))
            assert hit.headers["Content-Type"] == "application/json"
            assert hit.headers["X-Request-ID"]  # added outside the cache step, as for any answer
            assert await hit.read() == body
        assert len({hit.headers["X-Request-ID"] for hit in hits}) == 20
        assert gw.upstream.count(JOBS) == 1
        assert lookup is not None
        assert lookup.entry is not None
        assert lookup.entry.file is not None  # the hits above were sent from it
