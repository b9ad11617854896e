"""Property tests: whatever a client sends as credentials, the bearer parsing answers with an
identity or :class:`Refused` (a 401), never with another exception (a 500).

Covers the secret's unverified decoding (``claimed_name``), the tokens file's check
(``TokenStore.verify``) and the authenticate step's reading of the headers (``Authorization``,
``X-SLURM-USER-TOKEN``, ``X-SLURM-USER-NAME``: repeated, combined, malformed, oversized).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.refusal import Refused
from slurmgate.server.identity.secret import claimed_name
from slurmgate.server.identity.tokens import TokenStore
from slurmgate.server.keys import TOKENS
from slurmgate.server.pipeline.authenticate import _identify
from tests.server.identity.factory import make_entry, write_tokens

FUZZ = settings(
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["jti", "sun", "exp", "x"]) | st.text(max_size=5), children
        )
    ),
    max_leaves=10,
)
#: Secrets shaped like JWTs with payloads of every kind: JSON of any shape, non-UTF-8 bytes, bad
#: base64, plus plain noise.
SECRETS = st.one_of(
    st.text(max_size=100),
    st.builds(
        lambda header, payload, signature: f"{header}.{payload}.{signature}",
        st.text("ABCxyz-_019", min_size=1, max_size=10),
        st.one_of(
            JSON_LIKE.map(lambda value: _b64(json.dumps(value).encode())),
            st.binary(max_size=40).map(_b64),
            st.text("ABCxyz-_019", min_size=1, max_size=30),
        ),
        st.text("ABCxyz-_019", min_size=1, max_size=10),
    ),
    st.integers(2040, 2100).map(lambda n: "a." + "b" * n + ".c"),
)


@FUZZ
@given(secret=SECRETS)
def test_claimed_name_is_a_name_or_refused(secret: str) -> None:
    try:
        name = claimed_name(secret)
    except Refused:
        return
    assert 1 <= len(name) <= 64


def _store(tmp_path: Path, networks: tuple[str, ...] = ()) -> tuple[TokenStore, str]:
    secret, entry = make_entry("fuzz-me", "alice", networks=networks)
    write_tokens(tmp_path / "tokens.toml", entry)
    return TokenStore(tmp_path / "tokens.toml"), secret


@FUZZ
@given(secret=SECRETS, remote=st.none() | st.text(max_size=40) | st.ip_addresses().map(str))
def test_verify_is_an_identity_or_refused(tmp_path: Path, secret: str, remote: str | None) -> None:
    store, _ = _store(tmp_path, networks=("127.0.0.0/8", "::1/128"))
    try:
        identity = store.verify(secret, remote)
    except Refused:
        return
    assert identity.user == "alice"


#: Header values as aiohttp hands them over: text without surrogates (the test request encodes
#: them as UTF-8), sometimes a valid secret, sometimes long.
NAMES = ("Authorization", "X-SLURM-USER-TOKEN", "X-SLURM-USER-NAME", "authorization")


@st.composite
def header_sets(draw: st.DrawFn, secret: str) -> list[tuple[str, str]]:
    text = st.text(st.characters(codec="utf-8"), max_size=60)
    values = st.one_of(
        text,
        SECRETS,
        st.just(secret),
        st.sampled_from(["Bearer ", "bearer  ", "MUNGE ", "Basic ", "Bearer"]).flatmap(
            lambda scheme: st.one_of(st.just(scheme + secret), SECRETS.map(scheme.__add__))
        ),
        st.integers(4090, 4200).map(lambda n: "Bearer " + "a" * n),
        st.sampled_from(["alice", "bob", ""]),
    )
    return draw(st.lists(st.tuples(st.sampled_from(NAMES), values), max_size=4))


@FUZZ
@given(data=st.data())
def test_the_headers_give_an_identity_or_refused(tmp_path: Path, data: st.DataObject) -> None:
    store, secret = _store(tmp_path)
    headers = data.draw(header_sets(secret))
    app = web.Application()
    app[TOKENS] = store
    request = make_mocked_request("GET", "/slurm/v0.0.45/jobs/", headers=headers, app=app)

    async def identify() -> Identity | None:
        try:
            return await _identify(request)
        except Refused:
            return None

    identity = asyncio.run(identify())
    if identity is not None:
        assert identity.user == "alice"
        assert secret in "".join(value for _, value in headers)
