"""Talking to the lab's slurmrestd with tokens minted from Slurm's own key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from .suites import JWT_KEY, LabError, Suite

__all__ = ["mint_token", "rest_get", "served_versions"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(key: bytes, user: str, lifespan: int = 3600) -> str:
    """An HS256 JWT as Slurm's auth/jwt accepts it (claims ``sun``, ``iat``, ``exp``)."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sun": user, "iat": now, "exp": now + lifespan}).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


def rest_get(suite: Suite, path: str, user: str = "slurm") -> tuple[int, Any]:
    key = (suite.root / JWT_KEY.lstrip("/")).read_bytes()
    # The URL is the lab's own loopback address, never user input.
    request = urllib.request.Request(  # noqa: S310
        suite.url + path, headers={"X-SLURM-USER-TOKEN": mint_token(key, user, 120)}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def served_versions(suite: Suite) -> list[str]:
    status, spec = rest_get(suite, "/openapi/v3")
    if status != 200:
        raise LabError(f"{suite.name}: GET /openapi/v3 answered {status}")
    versions = {p.split("/")[2] for p in spec["paths"] if p.startswith(("/slurm/", "/slurmdb/"))}
    return sorted(versions, key=lambda v: tuple(int(x) for x in v[1:].split(".")))
