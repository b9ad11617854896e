"""Secrets: shaped like Slurm's JWTs, random, and read back defensively."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta

import jwt
import pytest

from slurmgate.server.identity.refusal import Refused
from slurmgate.server.identity.secret import (
    MAX_SECRET_CHARS,
    NO_EXPIRY,
    claimed_name,
    digest,
    mint,
)
from tests.server.identity.factory import NOW


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(payload: bytes) -> str:
    return f"{_b64(b'{}')}.{_b64(payload)}.{_b64(b'sig')}"


def test_minted_secret_carries_slurm_claims() -> None:
    expires = NOW + timedelta(days=30)
    secret = mint("ci-alice", "alice", now=NOW, expires=expires)
    assert jwt.get_unverified_header(secret) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(secret, options={"verify_signature": False, "verify_exp": False})
    assert claims["sun"] == "alice"
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == int(expires.timestamp())
    assert claims["jti"] == "ci-alice"
    assert len(base64.urlsafe_b64decode(claims["rnd"] + "=")) == 32
    assert claimed_name(secret) == "ci-alice"


def test_secret_without_expiry_gets_the_far_date() -> None:
    claims = jwt.decode(
        mint("x", "bob", now=NOW, expires=None), options={"verify_signature": False}
    )
    assert claims["exp"] == int(NO_EXPIRY.timestamp()) == 4102444800
    assert claims["exp"] < 2**32


def test_secrets_differ_and_their_key_is_not_guessable() -> None:
    first, second = (mint("same", "alice", now=NOW, expires=None) for _ in range(2))
    assert first != second
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(first, b"\0" * 64, algorithms=["HS256"])


def test_digest_is_sha256_of_the_whole_secret() -> None:
    secret = mint("n", "alice", now=NOW, expires=None)
    assert digest(secret) == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * (MAX_SECRET_CHARS + 1), "longer than"),
        ("", "not shaped like a JWT"),
        ("abc.def", "not shaped like a JWT"),
        ("a.b.c.d", "not shaped like a JWT"),
        ("a b.c.d", "not shaped like a JWT"),
        ("é.b.c", "not shaped like a JWT"),
        ("a.b=.c", "not shaped like a JWT"),
        ("a.bbbbb.c", "not base64url JSON"),  # 5 characters cannot be base64
        (_forged(b"\xff\xfe"), "not base64url JSON"),
        (_forged(b"{not json"), "not base64url JSON"),
        (_forged(b"[" * 1400), "not base64url JSON"),  # deeper than json's recursion limit
        (_forged(b'["jti"]'), "no usable jti"),
        (_forged(b'{"sun": "alice"}'), "no usable jti"),
        (_forged(b'{"jti": 7}'), "no usable jti"),
        (_forged(b'{"jti": "a b"}'), "no usable jti"),
        (_forged(json.dumps({"jti": "x" * 65}).encode()), "no usable jti"),
    ],
)
def test_malformed_secrets_are_refused_alike(secret: str, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        claimed_name(secret)
    assert refused.value.description == "invalid bearer token"
    assert reason in refused.value.reason
    assert refused.value.name is None
