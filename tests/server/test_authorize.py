"""Account restrictions in the gateway, against a fake slurmrestd that answers lookups.

Every refusal is checked to forward nothing; every request let through is checked to arrive
byte for byte as the client sent it, after the lookups it needed, made as the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from slurmgate.server.app import build_app
from slurmgate.server.config import parse_settings
from slurmgate.server.errors import BadRequest
from slurmgate.server.pipeline.authorize import MAX_LOOKUPS, query_pairs
from tests.server.gateway import create_token

V = "v0.0.45"
SERVED = ("v0.0.44", V)
KEY = b"k" * 64
SCOPES = (
    "slurm:read",
    "slurm:jobs:manage",
    "slurmdb:read",
    "slurmdb:jobs:manage",
    "slurmdb:users:manage",
    "slurmdb:associations:manage",
    "slurmdb:users_association:manage",
)
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeSlurmrestd:
    """Answers GETs from ``lookups`` (by path and query); anything else gets a plain 200."""

    seen: list[Seen] = field(default_factory=list)
    lookups: dict[str, tuple[int, object]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/openapi/v3":
            return web.json_response({"paths": {f"/slurm/{v}/ping/": {} for v in SERVED}})
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        if request.method == "GET" and request.raw_path in self.lookups:
            status, data = self.lookups[request.raw_path]
            return web.json_response(data, status=status)
        return web.Response(body=b'{"errors": [], "fake": true}', content_type="application/json")

    def forwarded(self) -> list[Seen]:
        """What reached slurmrestd other than the lookups."""
        return [s for s in self.seen if s.method != "GET" or s.target not in self.lookups]

    def looked_up(self) -> list[str]:
        return [s.target for s in self.seen if s.method == "GET" and s.target in self.lookups]


def user(name: str, default: str, *accounts: str) -> tuple[int, object]:
    associations = [{"account": a, "cluster": "c", "user": name} for a in accounts]
    record = {"name": name, "default": {"account": default}, "associations": associations}
    return 200, {"users": [record], "errors": [], "warnings": []}


def jobs(*accounts: str) -> tuple[int, object]:
    records = [{"job_id": 12 + i, "account": a} for i, a in enumerate(accounts)]
    return 200, {"jobs": records, "errors": [], "warnings": []}


NO_JOB = (404, {"jobs": [], "errors": [{"description": "Unable to query JobId=12"}]})


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    fake: FakeSlurmrestd
    #: bob limited to chem; carol limited to chem; alice unrestricted
    bob: str
    carol: str
    alice: str

    async def send(
        self,
        method: str,
        path: str,
        token: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        all_headers = {"Authorization": f"Bearer {token}", **JSON, **(headers or {})}
        # encoded=True: the query's escapes reach the gateway exactly as written here.
        url = URL(str(self.client.make_url("/")).rstrip("/") + path, encoded=True)
        response = await self.client.session.request(method, url, data=body, headers=all_headers)
        return response.status, json.loads(await response.read())

    async def refused(
        self, method: str, path: str, token: str, body: bytes | None = None, status: int = 403
    ) -> dict[str, Any]:
        """Send a request that must be refused with ``status``; nothing may be forwarded."""
        before = len(self.fake.forwarded())
        got, answer = await self.send(method, path, token, body)
        assert got == status, answer
        assert len(self.fake.forwarded()) == before
        (error,) = answer["errors"]
        assert error["error_number"] == status
        return error  # type: ignore[no-any-return]

    async def allowed(self, method: str, path: str, token: str, body: bytes | None = None) -> Seen:
        """Send a request that must be forwarded unchanged; returns what slurmrestd got."""
        got, answer = await self.send(method, path, token, body)
        assert got == 200, answer
        assert answer.get("fake") is True
        seen = self.fake.forwarded()[-1]
        assert (seen.method, seen.body) == (method, body or b"")
        assert seen.target == path.replace("/latest/", f"/{V}/")
        return seen


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeSlurmrestd, TestServer]]:
    fake = FakeSlurmrestd()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


@pytest.fixture
async def gw(upstream: tuple[FakeSlurmrestd, TestServer], tmp_path: Path) -> AsyncIterator[Gateway]:
    fake, server = upstream
    tokens = tmp_path / "tokens.toml"
    bob = create_token(tokens, "bob", scopes=SCOPES, accounts=("chem",))
    carol = create_token(tokens, "carol", scopes=SCOPES, accounts=("ch.m", "bio-.*"))
    alice = create_token(tokens, "alice", scopes=SCOPES)
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    settings = parse_settings(
        {
            "upstream": {"transport": "http", "url": str(server.make_url("")).rstrip("/")},
            "slurm_user_token": {"source": "jwt_key", "jwt_key": str(key)},
            "auth": {"tokens_file": str(tokens)},
            "limits": {"max_body_bytes": 65536},
        },
        origin="test",
    )
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    fake.lookups[f"/slurmdb/{V}/user/bob?with_assocs"] = user("bob", "chem", "chem")
    fake.lookups[f"/slurmdb/{V}/user/carol?with_assocs"] = user("carol", "physics", "physics")
    yield Gateway(client, fake, bob, carol, alice)
    await client.close()


def submit(*accounts: str | None) -> bytes:
    """A submit body: one job, or a HetJob for several accounts (None: no account)."""
    parts = [{"script": "#!/bin/sh\n", **({} if a is None else {"account": a})} for a in accounts]
    body = {"job": parts[0]} if len(parts) == 1 else {"jobs": parts}
    return json.dumps(body).encode()


SUBMIT = f"/slurm/{V}/job/submit"


# --- job submit -----------------------------------------------------------------------------------


async def test_a_job_in_an_allowed_account_is_forwarded_byte_for_byte(gw: Gateway) -> None:
    # Unusual but valid JSON: odd whitespace, keys out of order, escapes, a trailing newline.
    body = b'\r\n { "job" :{"script":"#!/bin/sh\\n\\u0065cho","account"\t:"chem" ,\n"name":"x"}}\n'
    await gw.allowed("POST", SUBMIT, gw.bob, body)
    assert gw.fake.looked_up() == []  # the account is named: nothing to ask


async def test_account_names_compare_lowercased(gw: Gateway) -> None:
    await gw.allowed("POST", SUBMIT, gw.bob, submit("CHEM"))
    error = await gw.refused("POST", SUBMIT, gw.bob, submit("Physics"))
    assert error["source"] == "account:physics"


async def test_a_job_in_another_account_is_403_naming_it(gw: Gateway) -> None:
    error = await gw.refused("POST", SUBMIT, gw.bob, submit("physics"))
    assert error["source"] == "account:physics"
    assert "physics" in error["description"]
    assert gw.fake.seen == []


async def test_patterns_match_whole_names(gw: Gateway) -> None:
    await gw.allowed("POST", SUBMIT, gw.carol, submit("chem"))
    await gw.allowed("POST", SUBMIT, gw.carol, submit("bio-x"))
    for account in ("chemistry", "xchem", "bio"):
        error = await gw.refused("POST", SUBMIT, gw.carol, submit(account))
        assert error["source"] == f"account:{account}"


async def test_a_job_without_account_is_checked_against_the_callers_default(gw: Gateway) -> None:
    await gw.allowed("POST", SUBMIT, gw.bob, submit(None))
    assert gw.fake.looked_up() == [f"/slurmdb/{V}/user/bob?with_assocs"]
    lookup = gw.fake.seen[0]
    assert lookup.headers["X-SLURM-USER-NAME"] == "bob"
    assert "Authorization" not in lookup.headers
    # carol's default account is physics.
    error = await gw.refused("POST", SUBMIT, gw.carol, submit(None))
    assert error["source"] == "account:physics"
    assert "default account" in error["description"]
    assert gw.fake.seen[-1].headers["X-SLURM-USER-NAME"] == "carol"


@pytest.mark.parametrize("key", ["job", "jobs"])
async def test_a_job_for_another_user_must_name_its_account(gw: Gateway, key: str) -> None:
    # Without an account the job would take user_id's default account, not the caller's.
    job = {"script": "#!/bin/sh", "user_id": "alice"}
    body = json.dumps({key: job if key == "job" else [job]}).encode()
    error = await gw.refused("POST", SUBMIT, gw.bob, body)
    assert error["source"] == "default_account"
    assert "user_id" in error["description"]
    named = json.dumps(
        {key: ({**job, "account": "chem"} if key == "job" else [{**job, "account": "chem"}])}
    )
    await gw.allowed("POST", SUBMIT, gw.bob, named.encode())


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"users": [], "errors": []}),
        (200, {"users": [{"name": "bob", "default": {"account": ""}}], "errors": []}),
        (200, {"users": [{"name": "bob"}], "errors": []}),
        (200, {"users": [{"name": "rob", "default": {"account": "chem"}}], "errors": []}),
        (200, {"users": [{"name": "bob", "default": {"account": "chem"}}], "errors": [{}]}),
        (500, {"errors": [{"description": "slurmdbd down"}]}),
        (200, "not an object"),
    ],
)
async def test_a_default_account_that_cannot_be_determined_is_403(
    gw: Gateway, answer: tuple[int, object]
) -> None:
    gw.fake.lookups[f"/slurmdb/{V}/user/bob?with_assocs"] = answer
    error = await gw.refused("POST", SUBMIT, gw.bob, submit(None))
    assert error["source"] == "default_account"


async def test_hetjob_every_component_counts(gw: Gateway) -> None:
    await gw.allowed("POST", SUBMIT, gw.bob, submit("chem", "chem"))
    error = await gw.refused("POST", SUBMIT, gw.bob, submit("chem", "physics"))
    assert error["source"] == "account:physics"
    # A component without account uses the default: chem for bob, physics for carol.
    await gw.allowed("POST", SUBMIT, gw.bob, submit("chem", None))
    error = await gw.refused("POST", SUBMIT, gw.carol, submit("chem", None))
    assert error["source"] == "account:physics"


async def test_allocate_and_latest_use_the_served_version(gw: Gateway) -> None:
    await gw.allowed("POST", "/slurm/latest/job/submit", gw.bob, submit(None))
    assert gw.fake.looked_up() == [f"/slurmdb/{V}/user/bob?with_assocs"]
    body = json.dumps({"hetjob": [{"account": "chem"}, {"account": "physics"}]}).encode()
    error = await gw.refused("POST", f"/slurm/{V}/job/allocate", gw.bob, body)
    assert error["source"] == "account:physics"


# --- bodies that cannot be read alike -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "source"),
    [
        (b'{"job": {"account": "chem", "account": "physics"}}', "application/json", "body"),
        (b'{"job": {"account": "chem"}}', "application/x-yaml", "Content-Type"),
        (b'{"job": {"account": "chem"}}', "application/json; charset=utf-8", "Content-Type"),
        (b'\xef\xbb\xbf{"job": {"account": "chem"}}', "application/json", "body"),
        (b'{"job": {"account": "chem\\u0000physics"}}', "application/json", "body.job.account"),
        (b'{"job": {"account": "chem"}} trailing', "application/json", "body"),
        (b"", "application/json", "body"),
    ],
)
async def test_bodies_slurmrestd_could_read_differently_are_400(
    gw: Gateway, body: bytes, content_type: str, source: str
) -> None:
    before = len(gw.fake.seen)
    response = await gw.client.post(
        SUBMIT,
        data=body,
        headers={"Authorization": f"Bearer {gw.bob}", "Content-Type": content_type},
    )
    assert response.status == 400
    (error,) = json.loads(await response.read())["errors"]
    assert error["source"] == source
    assert len(gw.fake.seen) == before


@pytest.mark.parametrize(
    ("body", "source"),
    [
        (b'{"job": {"account": 5}}', "body.job.account"),
        (b'{"job": {"Account": "physics"}}', "body.job.Account"),
        (b'{"job": {"account": "chem,physics"}}', "body.job.account"),
        (b'{"job": {"account": " chem"}}', "body.job.account"),
        (b'{"jobs": "chem"}', "body.jobs"),
    ],
)
async def test_accounts_that_cannot_be_determined_are_403(
    gw: Gateway, body: bytes, source: str
) -> None:
    error = await gw.refused("POST", SUBMIT, gw.bob, body)
    assert error["source"] == source
    assert "cannot tell which accounts" in error["description"]


# --- jobs that exist: lookups ---------------------------------------------------------------------


async def test_cancel_looks_the_job_up_as_the_caller(gw: Gateway) -> None:
    gw.fake.lookups[f"/slurm/{V}/job/12"] = jobs("chem")
    await gw.allowed("DELETE", f"/slurm/{V}/job/12", gw.bob)
    assert gw.fake.looked_up() == [f"/slurm/{V}/job/12"]
    assert gw.fake.seen[0].headers["X-SLURM-USER-NAME"] == "bob"
    # Every record counts: a HetJob whose second component is in physics.
    gw.fake.lookups[f"/slurm/{V}/job/12"] = jobs("chem", "physics")
    error = await gw.refused("DELETE", f"/slurm/{V}/job/12", gw.bob)
    assert error["source"] == "account:physics"
    assert "job 12" in error["description"]


@pytest.mark.parametrize(
    "answer",
    [
        NO_JOB,
        (200, {"jobs": [], "errors": []}),
        (200, {"jobs": [{"job_id": 12, "account": "chem"}, {"job_id": 13}], "errors": []}),
        (200, {"jobs": [{"job_id": 12, "account": "chem"}], "errors": [{"error": "x"}]}),
        (200, {"jobs": {"account": "chem"}, "errors": []}),
    ],
)
async def test_a_job_whose_account_cannot_be_determined_is_403(
    gw: Gateway, answer: tuple[int, object]
) -> None:
    gw.fake.lookups[f"/slurm/{V}/job/12"] = answer
    error = await gw.refused("DELETE", f"/slurm/{V}/job/12", gw.bob)
    assert error["source"] == "job:12"
    assert "cannot determine the account of job 12" in error["description"]


async def test_update_checks_the_account_set_and_the_jobs_current_one(gw: Gateway) -> None:
    path = f"/slurm/{V}/job/12"
    error = await gw.refused("POST", path, gw.bob, b'{"account": "physics"}')
    assert error["source"] == "account:physics"
    assert gw.fake.looked_up() == []  # the named account is refused before any lookup
    gw.fake.lookups[path] = jobs("physics")
    error = await gw.refused("POST", path, gw.bob, b'{"account": "chem"}')
    assert error["source"] == "account:physics"
    gw.fake.lookups[path] = jobs("chem")
    await gw.allowed("POST", path, gw.bob, b'{"account": "chem", "comment": "x"}')
    await gw.allowed("POST", path, gw.bob, b'{"comment": "x"}')


async def test_bulk_signal_needs_an_account_filter(gw: Gateway) -> None:
    path = f"/slurm/{V}/jobs/"
    for body in (b"{}", b'{"jobs": ["12"]}', b'{"signal": "SIGKILL"}'):
        error = await gw.refused("DELETE", path, gw.bob, body)
        assert error["source"] == "accounts"
        assert "every account" in error["description"]
    await gw.allowed("DELETE", path, gw.bob, b'{"account": "chem"}')
    error = await gw.refused("DELETE", path, gw.bob, b'{"account": "physics"}')
    assert error["source"] == "account:physics"
    gw.fake.lookups[f"/slurm/{V}/job/12"] = jobs("chem")
    gw.fake.lookups[f"/slurm/{V}/job/13"] = jobs("physics")
    error = await gw.refused("DELETE", path, gw.bob, b'{"account": "chem", "jobs": ["12", "13"]}')
    assert error["source"] == "account:physics"
    assert gw.fake.looked_up() == [f"/slurm/{V}/job/12", f"/slurm/{V}/job/13"]


async def test_one_lookup_per_entity_and_a_bound_on_lookups(gw: Gateway) -> None:
    path = f"/slurm/{V}/jobs/"
    gw.fake.lookups[f"/slurm/{V}/job/12"] = jobs("chem")
    await gw.allowed("DELETE", path, gw.bob, b'{"account": "chem", "jobs": ["12", "12"]}')
    assert gw.fake.looked_up() == [f"/slurm/{V}/job/12"]
    many = json.dumps({"account": "chem", "jobs": [str(i) for i in range(MAX_LOOKUPS + 1)]})
    error = await gw.refused("DELETE", path, gw.bob, many.encode())
    assert f"at most {MAX_LOOKUPS}" in error["description"]
    assert gw.fake.looked_up() == [f"/slurm/{V}/job/12"]


async def test_slurmdb_job_updates_look_up_the_accounting_record(gw: Gateway) -> None:
    path = f"/slurmdb/{V}/job/12"
    gw.fake.lookups[path] = jobs("physics")
    error = await gw.refused("POST", path, gw.bob, b'{"comment": {"administrator": "x"}}')
    assert error["source"] == "account:physics"
    assert gw.fake.looked_up() == [path]


# --- slurmdb --------------------------------------------------------------------------------------


async def test_deleting_a_user_needs_every_account_it_is_in(gw: Gateway) -> None:
    path = f"/slurmdb/{V}/user/erin"
    lookup = f"/slurmdb/{V}/user/erin?with_assocs"
    gw.fake.lookups[lookup] = user("erin", "chem", "chem", "physics")
    error = await gw.refused("DELETE", path, gw.bob)
    assert error["source"] == "account:physics"
    gw.fake.lookups[lookup] = user("erin", "chem", "chem")
    await gw.allowed("DELETE", path, gw.bob)
    gw.fake.lookups[lookup] = user("erin", "chem")  # in no account at all
    await gw.allowed("DELETE", path, gw.bob)
    assert all(s.headers["X-SLURM-USER-NAME"] == "bob" for s in gw.fake.seen)
    unreadable: list[tuple[int, object]] = [
        (200, {"users": [], "errors": []}),
        (200, {"users": [{"name": "erin"}]}),
        (200, {"users": [{"name": "erin", "associations": [{"account": 5}]}]}),
    ]
    for answer in unreadable:
        gw.fake.lookups[lookup] = answer
        error = await gw.refused("DELETE", path, gw.bob)
        assert error["source"] == "user:erin"


async def test_association_bodies(gw: Gateway) -> None:
    path = f"/slurmdb/{V}/users_association/"
    body = b'{"association_condition": {"accounts": ["physics"], "users": ["bob"]}, "user": {}}'
    error = await gw.refused("POST", path, gw.bob, body)
    assert error["source"] == "account:physics"
    body = b'{"association_condition": {"accounts": ["chem"], "users": ["erin"]}, "user": {}}'
    await gw.allowed("POST", path, gw.bob, body)
    body = b'{"associations": [{"account": "chem", "user": "x", "parent_account": "physics"}]}'
    error = await gw.refused("POST", f"/slurmdb/{V}/associations/", gw.bob, body)
    assert error["source"] == "account:physics"


@pytest.mark.parametrize(
    ("query", "status", "source"),
    [
        ("", 403, "accounts"),
        ("?account=physics", 403, "account:physics"),
        ("?account=chem&account=physics", 403, "account:physics"),
        ("?account=chem%2Cphysics", 403, "account:physics"),
        ("?account=chem&parent_account=physics", 403, "account:physics"),
        ("?account=", 403, "query:account"),
        ("?account", 403, "query:account"),
        ("?account=chem;physics", 403, "query:account"),
        ("?account=chem%3Bphysics", 403, "query:account"),
        ("?Account=chem", 403, "query:Account"),
        ("?account=ch+em", 403, "query:account"),
        ("?account=chem%00", 400, "query"),
        ("?account=chem%ff", 400, "query"),
        ("?account=chem%zz", 400, "query"),
        ("?account=chem%2", 400, "query"),
        ("?account=chem%C3", 400, "query"),
        ("?account=chem,physics", 400, "query"),
        ("?account==chem", 400, "query"),
        ("?account=chem=x", 400, "query"),
        ("?=chem", 400, "query"),
    ],
)
async def test_association_deletes_read_the_raw_query(
    gw: Gateway, query: str, status: int, source: str
) -> None:
    for path in (f"/slurmdb/{V}/associations/", f"/slurmdb/{V}/association/"):
        error = await gw.refused("DELETE", path + query, gw.bob, status=status)
        assert error["source"] == source


@pytest.mark.parametrize(
    "query",
    [
        "?account=chem",
        "?account=CHEM&&user=x",
        "?account=%63hem&account=chem",
        "?account=chem&flag",
    ],
)
async def test_association_deletes_in_allowed_accounts_pass_with_the_same_query(
    gw: Gateway, query: str
) -> None:
    await gw.allowed("DELETE", f"/slurmdb/{V}/associations/{query}", gw.bob)


def test_query_pairs() -> None:
    assert query_pairs("") == []
    assert query_pairs("a=1&&b=%41+c&flag&a=2&e=") == [
        ("a", "1"),
        ("b", "A c"),
        ("flag", ""),
        ("a", "2"),
        ("e", ""),
    ]
    assert query_pairs("n=%C3%A9") == [("n", "é")]
    for bad in ("a=%00", "a=%FF", "a=%g1", "a=%", "a=b=c", "=x", "a=%C3", "a=é", "a=1#", "a b"):
        with pytest.raises(BadRequest):
            query_pairs(bad)


# --- what is not restricted -----------------------------------------------------------------------


async def test_unrestricted_tokens_keep_slurmrestds_behaviour(gw: Gateway) -> None:
    # Not even the strict parser applies: slurmrestd answers (here: the fake forwards anything).
    for body in (submit("physics"), submit(None), b'{"job": {"account": "a", "account": "b"}}'):
        await gw.allowed("POST", SUBMIT, gw.alice, body)
    await gw.allowed("DELETE", f"/slurm/{V}/job/12", gw.alice)
    await gw.allowed("DELETE", f"/slurmdb/{V}/associations/?account=x,y", gw.alice)
    assert gw.fake.looked_up() == []


async def test_restricted_tokens_read_anything_and_write_where_no_account_is_named(
    gw: Gateway,
) -> None:
    await gw.allowed("GET", f"/slurm/{V}/jobs/?account=physics", gw.bob)
    await gw.allowed("GET", f"/slurmdb/{V}/associations/?account=physics", gw.bob)
    assert gw.fake.looked_up() == []


async def test_a_missing_scope_is_still_refused_first(gw: Gateway, tmp_path: Path) -> None:
    error = await gw.refused("POST", f"/slurm/{V}/reservation", gw.bob, b"{}")
    assert error["source"] == "scope:slurm:reservations:manage"


# --- logs -----------------------------------------------------------------------------------------


async def test_refusals_are_logged_without_secrets(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "slurmgate.authz")
    await gw.refused("POST", SUBMIT, gw.bob, submit("physics"))
    (record,) = [r for r in caplog.records if r.name == "slurmgate.authz"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "bob" in message
    assert "account physics" in message
    assert gw.bob not in message
    assert gw.bob.split(".")[-1] not in caplog.text
