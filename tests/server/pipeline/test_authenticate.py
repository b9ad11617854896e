"""The authenticate step in a tiny app: every header case, statuses, logs; MUNGE via HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, TCPConnector, web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpClient

from slurmgate.server.errors import SlurmgateError, to_response
from slurmgate.server.identity.munge import MungeVerifier
from slurmgate.server.identity.secret import mint
from slurmgate.server.identity.tokens import TokenStore
from slurmgate.server.keys import IDENTITY, MUNGE, TOKENS
from slurmgate.server.pipeline.authenticate import MAX_HEADER_CHARS, Step, authenticate
from tests.lab.env import Lab, LabSuite
from tests.server.identity.factory import make_entry, write_tokens

Client = TestClient[web.Request, web.Application]
NOW = datetime.now(UTC)


def step_then_handler(step: Step) -> Middleware:
    """The step, then the handler, with our exceptions answered as the chain answers them (kept
    tiny here: the chain itself is tested in tests/server/pipeline/test_chain.py)."""

    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            await step(request)
            return await handler(request)
        except SlurmgateError as error:
            return to_response(error)

    return impl


async def whoami(request: web.Request) -> web.Response:
    identity = request[IDENTITY]
    return web.json_response(
        {
            "user": identity.user,
            "method": identity.method,
            "name": identity.name,
            "scopes": sorted(identity.scopes),
        }
    )


async def public(request: web.Request) -> web.Response:
    return web.json_response({"public": IDENTITY not in request})


class Tokens:
    """Secrets of the tokens file the test app uses."""

    def __init__(self, path: Path) -> None:
        self.alice, alice = make_entry("alice-ci", "alice", scopes=("slurm:read",))
        self.bob, bob = make_entry("bob-ci", "bob")
        self.expired, expired = make_entry("old", expires=NOW - timedelta(days=1))
        self.revoked, revoked = make_entry("gone", revoked=NOW - timedelta(days=1))
        self.elsewhere, elsewhere = make_entry("lan", networks=("10.0.0.0/8",))
        self.digests = [e.digest for e in (alice, bob, expired, revoked, elsewhere)]
        write_tokens(path, alice, bob, expired, revoked, elsewhere)
        self.store = TokenStore(path)


def build(tokens: TokenStore | None, munge: MungeVerifier | None = None) -> web.Application:
    app = web.Application(middlewares=[step_then_handler(authenticate())])
    app.router.add_get("/private", whoami, name="private")
    app.router.add_get("/unnamed", whoami)
    app.router.add_get("/health", public, name="public-health")
    app.router.add_get("/status", public, name="optional-status")
    if tokens is not None:
        app[TOKENS] = tokens
    app[MUNGE] = munge
    return app


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path / "tokens.toml")


@pytest.fixture
async def client(tokens: Tokens, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(build(tokens.store))


async def body(response: ClientResponse) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await response.read())
    return data


async def refused(response: ClientResponse, description: str) -> None:
    assert response.status == 401, await response.text()
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="slurmgate", MUNGE realm="slurmgate"'
    )
    (error,) = (await body(response))["errors"]
    assert error["error"] == "Authentication failure"
    assert error["error_number"] == 401
    assert error["description"] == description
    assert error["source"] == "slurmgate authentication"


async def test_bearer_token(client: Client, tokens: Tokens) -> None:
    response = await client.get("/private", headers={"Authorization": f"Bearer {tokens.alice}"})
    assert response.status == 200
    assert await body(response) == {
        "user": "alice",
        "method": "token",
        "name": "alice-ci",
        "scopes": ["slurm:read"],
    }


@pytest.mark.parametrize("form", ["bearer {}", "BEARER {}", "Bearer   {}"])
async def test_scheme_is_case_insensitive_and_spaces_may_repeat(
    client: Client, tokens: Tokens, form: str
) -> None:
    response = await client.get("/private", headers={"Authorization": form.format(tokens.alice)})
    assert response.status == 200


async def test_slurm_headers(client: Client, tokens: Tokens) -> None:
    response = await client.get("/private", headers={"X-SLURM-USER-TOKEN": tokens.bob})
    assert (await body(response))["user"] == "bob"
    response = await client.get(
        "/private", headers={"X-SLURM-USER-TOKEN": tokens.bob, "X-SLURM-USER-NAME": "bob"}
    )
    assert (await body(response))["user"] == "bob"
    response = await client.get(
        "/private", headers={"Authorization": f"Bearer {tokens.bob}", "X-SLURM-USER-NAME": "bob"}
    )
    assert (await body(response))["user"] == "bob"


@pytest.mark.parametrize("header", ["X-SLURM-USER-TOKEN", "Authorization"])
async def test_a_user_name_other_than_the_tokens_is_refused(
    client: Client, tokens: Tokens, header: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = tokens.bob if header == "X-SLURM-USER-TOKEN" else f"Bearer {tokens.bob}"
    with caplog.at_level(logging.WARNING, logger="slurmgate.auth"):
        response = await client.get(
            "/private", headers={header: value, "X-SLURM-USER-NAME": "alice"}
        )
    await refused(response, "X-SLURM-USER-NAME names another user than the credentials")
    assert "X-SLURM-USER-NAME 'alice' but credentials of 'bob' (token bob-ci)" in caplog.text


async def test_no_credentials(client: Client) -> None:
    await refused(
        await client.get("/private"),
        "no credentials: send Authorization: Bearer <token> or MUNGE <credential>",
    )
    await refused(
        await client.get("/private", headers={"X-SLURM-USER-NAME": "alice"}),
        "no credentials: send Authorization: Bearer <token> or MUNGE <credential>",
    )


async def test_a_route_without_a_name_is_not_public(client: Client, tokens: Tokens) -> None:
    assert (await client.get("/unnamed")).status == 401
    response = await client.get("/unnamed", headers={"X-SLURM-USER-TOKEN": tokens.alice})
    assert response.status == 200


async def test_public_routes_and_routing_errors_skip_authentication(client: Client) -> None:
    response = await client.get("/health", headers={"Authorization": "Bearer nonsense"})
    assert await body(response) == {"public": True}
    assert (await client.get("/nowhere")).status == 404
    assert (await client.post("/private")).status == 405


async def test_optional_routes_check_credentials_only_when_sent(
    client: Client, tokens: Tokens
) -> None:
    assert await body(await client.get("/status")) == {"public": True}
    sent = await client.get("/status", headers={"Authorization": f"Bearer {tokens.alice}"})
    assert await body(sent) == {"public": False}
    await refused(
        await client.get("/status", headers={"Authorization": "Bearer nonsense"}),
        "invalid bearer token",
    )
    # a user name alone is a credential header too: it needs a credential with it
    assert (await client.get("/status", headers={"X-SLURM-USER-NAME": "alice"})).status == 401


async def test_both_authorization_and_slurm_token_are_refused(
    client: Client, tokens: Tokens
) -> None:
    response = await client.get(
        "/private",
        headers={"Authorization": f"Bearer {tokens.alice}", "X-SLURM-USER-TOKEN": tokens.alice},
    )
    await refused(response, "give either Authorization or X-SLURM-USER-TOKEN, not both")


@pytest.mark.parametrize("header", ["Authorization", "X-SLURM-USER-TOKEN", "X-SLURM-USER-NAME"])
async def test_a_header_given_twice_is_refused(client: Client, tokens: Tokens, header: str) -> None:
    value = {"Authorization": f"Bearer {tokens.alice}", "X-SLURM-USER-NAME": "alice"}.get(
        header, tokens.alice
    )
    headers = CIMultiDict([(header, value), (header, value)])
    if header == "X-SLURM-USER-NAME":
        headers["X-SLURM-USER-TOKEN"] = tokens.alice
    await refused(await client.get("/private", headers=headers), f"{header} given more than once")


@pytest.mark.parametrize(
    ("value", "description"),
    [
        ("Bearer", "Authorization must be '<scheme> <credentials>'"),
        ("Bearer {alice} Bearer {alice}", "Authorization must be '<scheme> <credentials>'"),
        ("Bearer {alice}, Bearer {alice}", "Authorization must be '<scheme> <credentials>'"),
        ("Bearer {alice},{alice}", "invalid bearer token"),
        ("Bearer\t{alice}", "Authorization must be '<scheme> <credentials>'"),
        ("Basic YWxpY2U6c2VjcmV0", "unsupported authorization scheme: use Bearer or MUNGE"),
        ("{alice}", "Authorization must be '<scheme> <credentials>'"),
        ("Bearer {alice}x", "invalid bearer token"),
        ("Bearer {alice}.", "invalid bearer token"),
        ("Bearer {bob_as_alice}", "invalid bearer token"),
        ("Bearer {unknown}", "invalid bearer token"),
        ("Bearer {expired}", "bearer token expired"),
        ("Bearer {revoked}", "bearer token revoked"),
        ("Bearer {elsewhere}", "bearer token not valid from this address"),
        ("MUNGE MUNGE:AwQ=:", "MUNGE authentication is not enabled"),
    ],
)
async def test_bad_authorization_headers(
    client: Client, tokens: Tokens, value: str, description: str
) -> None:
    secrets = {
        "alice": tokens.alice,
        "expired": tokens.expired,
        "revoked": tokens.revoked,
        "elsewhere": tokens.elsewhere,
        # The right jti with another secret, and a jti no entry has.
        "bob_as_alice": mint("alice-ci", "alice", now=NOW, expires=None),
        "unknown": mint("nobody", "alice", now=NOW, expires=None),
    }
    response = await client.get("/private", headers={"Authorization": value.format(**secrets)})
    await refused(response, description)


async def test_wrong_secret_and_unknown_name_are_indistinguishable(client: Client) -> None:
    answers = []
    for name in ("alice-ci", "nobody"):
        secret = mint(name, "alice", now=NOW, expires=None)
        response = await client.get("/private", headers={"Authorization": f"Bearer {secret}"})
        answers.append((response.status, dict(response.headers), await response.read()))
    for answer in answers:
        answer[1].pop("Date", None)
    assert answers[0] == answers[1]


async def test_oversized_and_non_ascii_credentials(client: Client, tokens: Tokens) -> None:
    huge = "Bearer " + "a" * MAX_HEADER_CHARS
    await refused(
        await client.get("/private", headers={"Authorization": huge}),
        f"Authorization longer than {MAX_HEADER_CHARS} characters",
    )
    # Raw bytes on the wire: a client library would refuse to send them.
    for header in (
        b"Authorization: Bearer " + tokens.alice.encode() + b"\xc3\xa9",
        b"Authorization: B\xc3\xa9arer " + tokens.alice.encode(),
        b"X-SLURM-USER-TOKEN: \xff" + tokens.alice.encode(),
    ):
        assert await raw_status(client, header) == 401
    # Whitespace around a header value is HTTP's optional whitespace, not part of the token.
    assert (
        await raw_status(client, b"X-SLURM-USER-TOKEN: \t " + tokens.alice.encode() + b" ") == 200
    )


async def raw_status(client: Client, header: bytes) -> int:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /private HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_refusals_are_logged_without_secrets(
    client: Client, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = mint("alice-ci", "alice", now=NOW, expires=None)
    with caplog.at_level(logging.INFO, logger="slurmgate.auth"):
        for value in (f"Bearer {wrong}", f"Bearer {tokens.revoked}", f"Bearer {tokens.elsewhere}"):
            await client.get("/private", headers={"Authorization": value})
    messages = [r.getMessage() for r in caplog.records if r.name == "slurmgate.auth"]
    assert len(messages) == 3
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert messages[0].startswith(
        "refused GET /private from 127.0.0.1: wrong secret (token alice-ci)"
    )
    assert messages[1].endswith(": token revoked (token gone)")
    assert "source address 127.0.0.1 outside the token's networks (token lan)" in messages[2]
    for secret in (wrong, tokens.revoked, tokens.elsewhere, tokens.alice):
        for part in secret.split("."):
            assert part not in caplog.text
    for digest in tokens.digests:
        assert digest.removeprefix("sha256:") not in caplog.text


async def test_a_flood_of_refusals_is_logged_as_one_line_and_a_count(
    aiohttp_client: AiohttpClient, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(build(tokens.store))  # one line per second
    counted = asyncio.Event()

    class Until(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "not logged one by one" in record.getMessage():
                counted.set()

    until = Until()
    logging.getLogger("slurmgate.auth").addHandler(until)
    try:
        with caplog.at_level(logging.INFO, logger="slurmgate.auth"):
            for n in range(20):
                wrong = mint(f"nobody-{n}", "alice", now=NOW, expires=None)
                response = await client.get(
                    "/private", headers={"Authorization": f"Bearer {wrong}"}
                )
                await refused(response, "invalid bearer token")
            async with asyncio.timeout(10):
                await counted.wait()
    finally:
        logging.getLogger("slurmgate.auth").removeHandler(until)
    assert [r.getMessage() for r in caplog.records if r.name == "slurmgate.auth"] == [
        "refused GET /private from 127.0.0.1: unknown token name 'nobody-0' (token -)",
        "19 more refusals within 1 s: invalid bearer token (not logged one by one)",
    ]


async def test_without_a_token_store_every_token_is_refused(
    aiohttp_client: AiohttpClient, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(build(None))
    with caplog.at_level(logging.ERROR, logger="slurmgate.auth"):
        response = await client.get("/private", headers={"Authorization": f"Bearer {tokens.alice}"})
    await refused(response, "bearer tokens cannot be checked right now")
    assert "no token store" in caplog.text


async def test_revocation_reaches_requests_without_a_restart(
    client: Client, tokens: Tokens
) -> None:
    headers = {"Authorization": f"Bearer {tokens.alice}"}
    assert (await client.get("/private", headers=headers)).status == 200
    store = tokens.store
    entries = list(store.entries.values())
    write_tokens(
        store.path,
        *(dataclasses.replace(e, revoked=NOW) if e.name == "alice-ci" else e for e in entries),
    )
    assert await store.refresh()
    await refused(await client.get("/private", headers=headers), "bearer token revoked")


# --- MUNGE, end to end against the lab's munged -------------------------------------------------


async def munge_client(
    suite: LabSuite, source: str, aiohttp_client: AiohttpClient, tokens: Tokens
) -> Client:
    verifier = MungeVerifier(
        max_age=5,
        scopes=("slurm:read", "slurmdb:read"),
        socket=suite.root / "run/munge/munge.socket.2",
        passwd_file=suite.root / "etc/passwd",
    )
    app = build(tokens.store, verifier)
    connector = TCPConnector(local_addr=(source, 0))
    client: Client = await aiohttp_client(app, connector=connector)
    return client


MungeFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def munge(lab: Lab) -> MungeFactory:
    suite = lab.suites["forky"]

    async def make(user: str, *flags: str) -> str:
        done = await asyncio.to_thread(suite.run, "munge", "-n", *flags, user=user)
        return done.stdout.strip()

    return make


@pytest.mark.lab
async def test_munge_from_the_credentials_host(
    lab: Lab, munge: MungeFactory, aiohttp_client: AiohttpClient, tokens: Tokens
) -> None:
    client = await munge_client(lab.suites["forky"], "127.0.0.1", aiohttp_client, tokens)
    credential = await munge("carol", "-t", "5")
    headers = {"Authorization": f"MUNGE {credential}", "X-SLURM-USER-NAME": "carol"}
    response = await client.get("/private", headers=headers)
    assert await body(response) == {
        "user": "carol",
        "method": "munge",
        "name": "munge:2003",
        "scopes": ["slurm:read", "slurmdb:read"],
    }
    # The same credential again: refused.
    await refused(await client.get("/private", headers=headers), "MUNGE credential already used")
    # Another user's name next to a fresh credential: refused.
    response = await client.get(
        "/private",
        headers={
            "Authorization": f"MUNGE {await munge('carol', '-t', '5')}",
            "X-SLURM-USER-NAME": "dora",
        },
    )
    await refused(response, "X-SLURM-USER-NAME names another user than the credentials")


@pytest.mark.lab
async def test_munge_from_another_address_is_refused(
    lab: Lab,
    munge: MungeFactory,
    aiohttp_client: AiohttpClient,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await munge_client(lab.suites["forky"], "127.0.0.2", aiohttp_client, tokens)
    credential = await munge("alice", "-t", "5")
    with caplog.at_level(logging.WARNING, logger="slurmgate.auth"):
        response = await client.get("/private", headers={"Authorization": f"MUNGE {credential}"})
    await refused(response, "MUNGE credential encoded on another host")
    assert "encoded on 127.0.0.1, request from 127.0.0.2 (token munge:2001)" in caplog.text
    assert credential not in caplog.text
