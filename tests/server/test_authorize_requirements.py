"""Group and network requirements in the gateway, against a fake slurmrestd.

Users and groups come from a passwd/group file pair written by each test: alice (no admin
group) and dora (in hpcadmin). Every refusal is checked to forward nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.config import parse_settings
from tests.server.gateway import create_token

V = "v0.0.45"
KEY = b"k" * 64
CONFIG = f"/slurmdb/{V}/config"
RECONFIGURE = f"/slurm/{V}/reconfigure/"
JOBS = f"/slurm/{V}/jobs/"
SCOPES = ("slurm:read", "slurm:reconfigure", "slurmdb:config:read")
USERS = "alice:x:2001:2001::/home/alice:/bin/sh\ndora:x:2004:2004::/home/dora:/bin/sh\n"
GROUPS = "alice:x:2001:\ndora:x:2004:\nhpcadmin:x:3000:dora\n"
RULES = [
    # the config dump: hpcadmin, from the gateway host only
    {"scopes": ["slurmdb:config:read"], "groups": ["hpcadmin"], "networks": ["127.0.0.1/32"]},
    # reconfigure: from the gateway host, whoever holds the scope
    {"operations": ["slurm_v0045_get_reconfigure"], "networks": ["127.0.0.1"]},
]


@dataclass
class FakeSlurmrestd:
    """Records what reaches it; answers everything with a plain 200."""

    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/openapi/v3":
            return web.json_response({"paths": {f"/slurm/{V}/ping/": {}}})
        self.seen.append(f"{request.method} {request.path} {request.headers['X-SLURM-USER-NAME']}")
        return web.Response(body=b'{"errors": [], "fake": true}', content_type="application/json")


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    fake: FakeSlurmrestd
    tokens: dict[str, str]
    group_file: Path

    async def send(
        self, path: str, user: str, *, local: str = "127.0.0.1"
    ) -> tuple[int, dict[str, Any]]:
        """GET ``path`` as ``user``, connecting from the local address ``local``."""
        connector = aiohttp.TCPConnector(local_addr=(local, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            headers = {"Authorization": f"Bearer {self.tokens[user]}"}
            async with session.get(self.client.make_url(path), headers=headers) as response:
                return response.status, json.loads(await response.read())

    async def refused(self, path: str, user: str, *, local: str = "127.0.0.1") -> dict[str, Any]:
        before = list(self.fake.seen)
        status, body = await self.send(path, user, local=local)
        assert status == 403, body
        assert self.fake.seen == before  # nothing forwarded
        (error,) = body["errors"]
        return error  # type: ignore[no-any-return]

    async def allowed(self, path: str, user: str, *, local: str = "127.0.0.1") -> None:
        status, body = await self.send(path, user, local=local)
        assert status == 200, body
        assert body["fake"] is True
        assert self.fake.seen[-1] == f"GET {path.replace('/latest/', f'/{V}/')} {user}"


async def start(
    tmp_path: Path,
    *,
    cache: dict[str, object] | None = None,
    rules: list[dict[str, object]] | None = None,
    **authorization: object,
) -> AsyncIterator[Gateway]:
    fake = FakeSlurmrestd()
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", fake.handle)
    upstream = TestServer(upstream_app, host="127.0.0.1")
    await upstream.start_server()
    try:
        tokens_file = tmp_path / "tokens.toml"
        tokens = {
            user: create_token(tokens_file, user, scopes=(*SCOPES, "slurmgate:metrics"))
            for user in ("alice", "dora", "zed")  # zed: in no user database
        }
        (tmp_path / "passwd").write_text(USERS)
        group_file = tmp_path / "group"
        group_file.write_text(GROUPS)
        key = tmp_path / "jwt.key"
        key.write_bytes(KEY)
        settings = parse_settings(
            {
                "upstream": {"url": str(upstream.make_url("")).rstrip("/")},
                "slurm_user_token": {"jwt_key": str(key)},
                "auth": {"tokens_file": str(tokens_file)},
                "authorization": {
                    "require": RULES if rules is None else rules,
                    "passwd_file": str(tmp_path / "passwd"),
                    "group_file": str(group_file),
                    **authorization,
                },
                # Each allowed request must reach the fake as its own user; a cache hit would
                # answer zed with alice's answer (tests/server/pipeline/test_cache.py covers that).
                "cache": {"backend": "off"} if cache is None else cache,
            },
            origin="test",
        )
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            yield Gateway(client, fake, tokens, group_file)
        finally:
            await client.close()
    finally:
        await upstream.close()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    (tmp_path / "cached").mkdir()
    async for gateway in start(tmp_path / "cached"):
        yield gateway


@pytest.fixture
async def uncached(tmp_path: Path) -> AsyncIterator[Gateway]:
    (tmp_path / "uncached").mkdir()
    async for gateway in start(tmp_path / "uncached", group_cache_seconds=0):
        yield gateway


async def test_the_scope_without_the_group_is_403_naming_the_group(gw: Gateway) -> None:
    error = await gw.refused(CONFIG, "alice")
    assert error["source"] == "group:hpcadmin"
    assert error["description"] == (
        f"alice must be in the Unix group hpcadmin to use GET {CONFIG} (authorization.require.0)"
    )


async def test_the_scope_with_the_group_is_forwarded(gw: Gateway) -> None:
    await gw.allowed(CONFIG, "dora")
    await gw.allowed("/slurmdb/latest/config", "dora")
    error = await gw.refused("/slurmdb/latest/config", "alice")
    assert error["source"] == "group:hpcadmin"


async def test_outside_the_networks_is_403_naming_them(gw: Gateway) -> None:
    error = await gw.refused(CONFIG, "dora", local="127.0.0.2")
    assert error["source"] == "network"
    assert error["description"] == (
        f"GET {CONFIG} may be used only from 127.0.0.1/32 (authorization.require.0); this "
        "request comes from 127.0.0.2"
    )
    # A rule picking by operation id, without groups: the network alone.
    error = await gw.refused(RECONFIGURE, "alice", local="127.0.0.2")
    assert error["source"] == "network"
    await gw.allowed(RECONFIGURE, "alice")


async def test_operations_no_rule_picks_are_not_restricted(gw: Gateway) -> None:
    await gw.allowed(JOBS, "alice", local="127.0.0.2")
    await gw.allowed(JOBS, "zed", local="127.0.0.2")


async def test_a_user_whose_groups_cannot_be_resolved_is_refused(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    error = await gw.refused(CONFIG, "zed")
    assert error["source"] == "group"
    assert "cannot determine the Unix groups of zed" in error["description"]
    assert "no user 'zed' in" in caplog.text
    gw.group_file.unlink()  # dora's groups were not resolved yet: fail closed
    error = await gw.refused(CONFIG, "dora")
    assert error["source"] == "group"


async def test_group_changes_apply_after_the_cache_time(gw: Gateway, uncached: Gateway) -> None:
    # Cached (60 s): dora keeps hpcadmin for a while after leaving it.
    await gw.allowed(CONFIG, "dora")
    gw.group_file.write_text(GROUPS.replace("hpcadmin:x:3000:dora", "hpcadmin:x:3000:"))
    await gw.allowed(CONFIG, "dora")
    # Not cached: at once.
    await uncached.allowed(CONFIG, "dora")
    uncached.group_file.write_text(GROUPS.replace("hpcadmin:x:3000:dora", "hpcadmin:x:3000:"))
    assert (await uncached.refused(CONFIG, "dora"))["source"] == "group:hpcadmin"


async def test_a_cached_answer_is_refused_at_once_to_a_user_who_left_the_group(
    tmp_path: Path,
) -> None:
    """With ``group_cache_seconds = 0`` and the response cache on, the second of two identical
    requests is refused as soon as the user left the required group, though a fresh answer is
    stored for it: the cache sits behind authorization, on the one request path."""
    rule: dict[str, object] = {"operations": ["slurm_v0045_get_jobs"], "groups": ["hpcadmin"]}
    async for gw in start(
        tmp_path,
        # fresh for the whole test, however slow the machine
        cache={"backend": "memory", "short": {"min": 60.0, "max": 60.0}},
        rules=[rule],
        group_cache_seconds=0,
    ):
        url = gw.client.make_url(JOBS)
        headers = {"Authorization": f"Bearer {gw.tokens['dora']}"}
        async with aiohttp.ClientSession() as session:

            async def get(
                url: object = url, headers: dict[str, str] = headers
            ) -> tuple[int, str | None]:
                async with session.get(str(url), headers=headers) as response:
                    await response.read()
                    return response.status, response.headers.get("X-Cache")

            assert await get() == (200, "MISS")
            assert await get() == (200, "HIT")
            forwarded = list(gw.fake.seen)
            gw.group_file.write_text(GROUPS.replace("hpcadmin:x:3000:dora", "hpcadmin:x:3000:"))
            assert await get() == (403, None)
            gw.group_file.write_text(GROUPS)
            assert await get() == (200, "HIT")  # the stored answer was kept, and is fresh
            assert gw.fake.seen == forwarded  # one upstream call in all


async def test_the_gateways_own_endpoints_meet_the_requirements_that_pick_them(
    tmp_path: Path,
) -> None:
    """A rule picking an own endpoint's scope (or its operation id) applies to it as to
    slurmrestd's operations: the same authorize step, the same routing-table row."""
    rules: list[dict[str, object]] = [
        {"scopes": ["slurmgate:metrics"], "groups": ["hpcadmin"]},
        {"operations": ["slurmgate_get_metrics"], "networks": ["127.0.0.1/32"]},
    ]
    async for gw in start(tmp_path, rules=rules):
        for user, local, expected in (
            ("alice", "127.0.0.1", 403),  # not in hpcadmin
            ("dora", "127.0.0.2", 403),  # in hpcadmin, from outside the network
            ("dora", "127.0.0.1", 200),
        ):
            connector = aiohttp.TCPConnector(local_addr=(local, 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                headers = {"Authorization": f"Bearer {gw.tokens[user]}"}
                async with session.get(gw.client.make_url("/metrics"), headers=headers) as answer:
                    text = await answer.text()
                    assert answer.status == expected, (user, local, text)
            if expected == 403:
                (error,) = json.loads(text)["errors"]
                assert error["source"] in {"group:hpcadmin", "network"}
