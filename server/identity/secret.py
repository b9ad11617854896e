"""Bearer secrets: shaped like Slurm's JWTs, checked only against the digest the tokens file keeps.

A secret is an HS256 JWT carrying Slurm's claims (``sun``, ``iat``, ``exp``) so that clients which
decode slurmrestd tokens to read ``exp`` keep working, plus ``jti`` (the entry's name) and ``rnd``
(256 random bits). It is signed with a random key that is thrown away at once: the signature is
never checked. The gateway treats a secret as opaque bytes whose sha256 must equal the entry's
``digest``; ``jti`` is read without verification only to find which entry to compare with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from datetime import UTC, datetime

import jwt

from slurmgate.server.identity.refusal import Refused

__all__ = [
    "DIGEST_PATTERN",
    "MAX_SECRET_CHARS",
    "NAME_PATTERN",
    "NO_EXPIRY",
    "claimed_name",
    "digest",
    "mint",
]

#: Token names: also the ``jti`` claim, so they stay short and plain.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
#: How the tokens file stores a secret: its sha256, never the secret.
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
#: A minted secret is about 300 characters; anything much longer is not one of ours.
MAX_SECRET_CHARS = 2048
#: ``exp`` of a secret whose entry never expires: far away, and still inside unsigned 32 bits.
NO_EXPIRY = datetime(2100, 1, 1, tzinfo=UTC)

_SEGMENT = r"[A-Za-z0-9_-]+"
_JWT_SHAPE = re.compile(rf"{_SEGMENT}\.({_SEGMENT})\.{_SEGMENT}", re.ASCII)
_INVALID = "invalid bearer token"


def mint(name: str, user: str, *, now: datetime, expires: datetime | None) -> str:
    """A new secret for the entry ``name`` acting as ``user``; its signing key is discarded."""
    claims = {
        "sun": user,
        "iat": int(now.timestamp()),
        "exp": int((expires or NO_EXPIRY).timestamp()),
        "jti": name,
        "rnd": secrets.token_urlsafe(32),
    }
    return jwt.encode(claims, secrets.token_bytes(64), algorithm="HS256")


def digest(secret: str) -> str:
    """What the tokens file stores for ``secret``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def claimed_name(secret: str) -> str:
    """The ``jti`` a secret claims, read without verification; :class:`Refused` if malformed.

    Everything here is attacker-controlled: the size is bounded before any decoding, and every
    decoding failure is the same refusal. A name that no entry has is not refused here, so that
    the caller does the same work for an unknown name as for a wrong secret.
    """
    if len(secret) > MAX_SECRET_CHARS:
        raise Refused(_INVALID, reason=f"token longer than {MAX_SECRET_CHARS} characters")
    shape = _JWT_SHAPE.fullmatch(secret)
    if shape is None:
        raise Refused(_INVALID, reason="token is not shaped like a JWT")
    payload = shape.group(1)
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise Refused(_INVALID, reason="token payload is not base64url JSON") from None
    jti = claims.get("jti") if isinstance(claims, dict) else None
    if not isinstance(jti, str) or NAME_PATTERN.fullmatch(jti) is None:
        raise Refused(_INVALID, reason="token has no usable jti claim")
    return jti
