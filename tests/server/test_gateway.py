"""The gateway against a fake slurmrestd: routing, errors in the envelope, exact passthrough."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.config import Settings, parse_settings
from tests.server.gateway import create_token

SERVED = ("v0.0.44", "v0.0.45")
KEY = b"k" * 64


@dataclass
class FakeSlurmrestd:
    """Records what it receives; answers with whatever the test put in ``answers``."""

    seen: list[web.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    answers: dict[str, web.Response] = field(default_factory=dict)
    #: paths whose requests wait for ``hang`` to be set
    hang_paths: set[str] = field(default_factory=set)
    hang: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/openapi/v3":
            paths: dict[str, object] = {f"/slurm/{v}/ping/": {} for v in SERVED}
            return web.json_response({"paths": paths})
        self.seen.append(request)
        self.bodies.append(await request.read())
        if request.path in self.hang_paths:
            await self.hang.wait()
        answer = self.answers.get(request.path)
        if answer is not None:
            return answer
        return web.Response(
            body=b'{"errors": [], "meta": {}, "fake": true}', content_type="application/json"
        )


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeSlurmrestd, TestServer]]:
    fake = FakeSlurmrestd()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, server
    fake.hang.set()
    await server.close()


def settings_for(url: str, tmp_path: Path, **limits: object) -> Settings:
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    return parse_settings(
        {
            "upstream": {"transport": "http", "url": url, "timeout": 1.0},
            "slurm_user_token": {"source": "jwt_key", "jwt_key": str(key)},
            "auth": {"tokens_file": str(tmp_path / "tokens.toml")},
            "limits": limits or {},
            # These tests check what reaches slurmrestd for each request; the cache would answer
            # repeated reads itself (tests/server/pipeline/test_cache.py tests it on this fake).
            "cache": {"backend": "off"},
        },
        origin="test",
    )


@pytest.fixture
def token(tmp_path: Path) -> str:
    return create_token(tmp_path / "tokens.toml", "alice")


@pytest.fixture
async def gateway(
    upstream: tuple[FakeSlurmrestd, TestServer], tmp_path: Path, token: str
) -> AsyncIterator[TestClient[Any, Any]]:
    _, server = upstream
    url = str(server.make_url("")).rstrip("/")
    client: TestClient[Any, Any] = TestClient(
        TestServer(build_app(settings_for(url, tmp_path, max_body_bytes=4096)))
    )
    await client.start_server()
    yield client
    await client.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def envelope(response: ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(await response.read())
    assert body["warnings"] == []
    assert len(body["errors"]) == 1
    return body["errors"][0]  # type: ignore[no-any-return]


async def test_meta_versions_needs_no_credentials(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.get("/meta/versions")
    assert response.status == 200
    body = await response.json()
    assert [v["version"] for v in body["versions"]] == list(SERVED)
    assert body["latest"] == "v0.0.45"
    assert body["versions"][0]["slurm_release"] == "26.05.5"


async def test_upstream_gets_the_callers_name_and_the_gateways_token(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    headers = {
        **auth(token),
        "Accept": "application/json",
        "Cookie": "session=1",
        "X-Forwarded-For": "10.0.0.1",
        "X-Custom": "x",
    }
    response = await gateway.get("/slurm/v0.0.45/nodes/", headers=headers)
    assert response.status == 200
    (seen,) = fake.seen
    assert seen.headers["X-SLURM-USER-NAME"] == "alice"
    claims = jwt.decode(seen.headers["X-SLURM-USER-TOKEN"], KEY, algorithms=["HS256"])
    assert claims["sun"] == "slurm"
    assert "Authorization" not in seen.headers
    for dropped in ("Cookie", "X-Forwarded-For", "X-Custom"):
        assert dropped not in seen.headers
    assert seen.headers["Accept"] == "application/json"


async def test_answers_pass_through_byte_for_byte(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    body = b'{"errors": [{"error": "nope"}], "jobs": [], "x": "\xff\xfe"}\n'
    fake.answers["/slurm/v0.0.45/jobs/"] = web.Response(
        status=200, body=body, headers={"Content-Type": "application/json"}
    )
    fake.answers["/slurm/v0.0.45/job/42"] = web.Response(
        status=500, body=b"plain words", headers={"Content-Type": "text/plain; charset=odd"}
    )
    response = await gateway.get("/slurm/v0.0.45/jobs/", headers=auth(token))
    assert (response.status, await response.read()) == (200, body)
    assert response.headers.getall("Content-Type") == ["application/json"]
    response = await gateway.get("/slurm/v0.0.45/job/42", headers=auth(token))
    assert (response.status, await response.read()) == (500, b"plain words")
    assert response.headers["Content-Type"] == "text/plain; charset=odd"


async def test_paths_with_and_without_trailing_slash_and_latest(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    for path, expected in (
        ("/slurm/v0.0.45/jobs/", "/slurm/v0.0.45/jobs/"),
        ("/slurm/v0.0.45/jobs", "/slurm/v0.0.45/jobs"),
        ("/slurm/v0.0.44/nodes", "/slurm/v0.0.44/nodes"),
        ("/slurm/v0.0.45/conf/", "/slurm/v0.0.45/conf/"),
        ("/slurm/latest/jobs/?flags=DETAIL&x=1&x=2", "/slurm/v0.0.45/jobs/?flags=DETAIL&x=1&x=2"),
        ("/slurmdb/latest/job/12", "/slurmdb/v0.0.45/job/12"),
    ):
        response = await gateway.get(path, headers=auth(token))
        assert response.status == 200, path
        assert fake.seen[-1].raw_path == expected


async def test_unknown_version_or_path_is_404_naming_the_versions(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    for path in ("/slurm/v0.0.40/jobs/", "/slurm/v0.0.99/jobs/", "/slurm/v0.0.45/nothing"):
        error = await envelope(await gateway.get(path, headers=auth(token)), 404)
        assert "v0.0.44, v0.0.45" in error["description"]
    assert fake.seen == []


async def test_wrong_method_is_405_with_allow(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    response = await gateway.put("/slurm/v0.0.45/jobs/", headers=auth(token))
    error = await envelope(response, 405)
    assert response.headers["Allow"] == "DELETE, GET"
    assert "PUT" in error["description"]
    assert fake.seen == []


async def test_body_over_the_limit_is_413(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    big = b'{"job": {"script": "' + b"x" * 5000 + b'"}}'
    headers = {**auth(token), "Content-Type": "application/json"}
    response = await gateway.post("/slurm/v0.0.45/job/submit", data=big, headers=headers)
    await envelope(response, 413)
    assert fake.seen == []


@pytest.mark.parametrize(
    "param", ["..", ".", "1%2F..%2Fnodes", "a b", "x%00", "%2e%2e", "1;drop", "123%0A"]
)
async def test_path_parameters_slurmrestd_could_read_differently_are_400(
    gateway: TestClient[Any, Any],
    upstream: tuple[FakeSlurmrestd, TestServer],
    token: str,
    param: str,
) -> None:
    fake, _ = upstream
    response = await gateway.get(f"/slurm/v0.0.45/job/{param}", headers=auth(token))
    assert response.status in (400, 404)
    assert response.headers["Content-Type"] == "application/json"
    assert fake.seen == []


async def test_unauthenticated_requests_never_reach_the_upstream(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer]
) -> None:
    fake, _ = upstream
    error = await envelope(await gateway.get("/slurm/v0.0.45/jobs/"), 401)
    assert error["error"] == "Authentication failure"
    assert fake.seen == []


async def test_upstream_timeout_is_504(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    fake.hang_paths.add("/slurm/v0.0.45/ping/")
    response = await gateway.get("/slurm/v0.0.45/ping/", headers=auth(token))
    error = await envelope(response, 504)
    assert "timed out" in error["error"]


async def test_upstream_down_is_502(tmp_path: Path, token: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    app = build_app(settings_for(f"http://127.0.0.1:{port}", tmp_path))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/slurm/v0.0.45/ping/", headers=auth(token))
        error = await envelope(response, 502)
        assert error["error"] == "Upstream slurmrestd unavailable"


async def until_accepted(gateway: TestClient[Any, Any], token: str) -> None:
    """Wait (at most 5 s) until the tokens file's watcher has picked up a new token."""
    for _ in range(50):
        if (await gateway.get("/slurm/v0.0.45/jobs/", headers=auth(token))).status == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway never accepted the new token")


async def test_a_scope_the_token_lacks_is_403_naming_it(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], tmp_path: Path
) -> None:
    fake, _ = upstream
    reader = create_token(tmp_path / "tokens.toml", "bob", scopes=("slurm:read",))
    await until_accepted(gateway, reader)
    seen = len(fake.seen)
    headers = {**auth(reader), "Content-Type": "application/json"}
    for method, path, scope in (
        ("POST", "/slurm/v0.0.45/job/submit", "slurm:jobs:manage"),
        ("DELETE", "/slurm/v0.0.45/job/12", "slurm:jobs:manage"),
        ("GET", "/slurmdb/v0.0.45/accounts/", "slurmdb:read"),
        ("GET", "/slurm/v0.0.45/reconfigure/", "slurm:reconfigure"),
    ):
        response = await gateway.request(method, path, headers=headers, data=b"{}")
        error = await envelope(response, 403)
        assert error["source"] == f"scope:{scope}"
        assert scope in error["description"]
    assert len(fake.seen) == seen


async def test_account_limited_tokens_write_only_to_their_accounts(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], tmp_path: Path
) -> None:
    fake, _ = upstream
    limited = create_token(
        tmp_path / "tokens.toml",
        "bob",
        scopes=("slurm:read", "slurm:jobs:manage", "slurm:nodes:manage"),
        accounts=("chem",),
    )
    await until_accepted(gateway, limited)
    headers = {**auth(limited), "Content-Type": "application/json"}
    submit = "/slurm/v0.0.45/job/submit"
    seen = len(fake.seen)
    physics = b'{"job": {"account": "physics", "script": "#!/bin/sh"}}'
    error = await envelope(await gateway.post(submit, headers=headers, data=physics), 403)
    assert error["source"] == "account:physics"
    assert len(fake.seen) == seen
    chem = b'{"job": {"account": "chem", "script": "#!/bin/sh"}}'
    response = await gateway.post(submit, headers=headers, data=chem)
    assert response.status == 200
    assert fake.bodies[-1] == chem
    # A write that names no account is only a matter of scope.
    response = await gateway.post("/slurm/v0.0.45/node/n1", headers=headers, data=b"{}")
    assert response.status == 200


async def test_openapi_documents_are_served_without_credentials(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer]
) -> None:
    fake, _ = upstream
    response = await gateway.get("/openapi/v3")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    doc = json.loads(await response.read())
    versions = {path.split("/")[2] for path in doc["paths"] if path.startswith("/slurm/")}
    assert versions == set(SERVED)  # the versions the upstream serves, not all generated ones
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    one = json.loads(await (await gateway.get("/openapi/v3/v0.0.45")).read())
    assert {path.split("/")[2] for path in one["paths"] if path.startswith("/slurm/")} == {
        "v0.0.45"
    }
    error = await envelope(await gateway.get("/openapi/v3/v0.0.40"), 404)
    assert "v0.0.44, v0.0.45" in error["description"]
    assert fake.seen == []  # answered by the gateway itself


async def test_head_of_an_own_endpoint_needs_its_scope_like_get(
    gateway: TestClient[Any, Any], upstream: tuple[FakeSlurmrestd, TestServer], token: str
) -> None:
    fake, _ = upstream
    # alice's token has no slurmgate:* scope
    for method in ("HEAD", "GET"):
        for path, scope in (
            ("/metrics", "slurmgate:metrics"),
            ("/hardware/table", "slurmgate:hardware"),
        ):
            response = await gateway.request(method, path, headers=auth(token))
            assert response.status == 403, (method, path)
            if method == "GET":
                assert (await envelope(response, 403))["source"] == f"scope:{scope}"
        assert (await gateway.request(method, "/metrics")).status == 401
        assert (await gateway.request(method, "/health")).status in {200, 503}
    # /health's checks ping slurmctld and slurmdbd; no hardware was computed
    assert {request.path.rsplit("/", 2)[1] for request in fake.seen} <= {"ping"}
