"""``GET /openapi/v3`` and ``GET /openapi/v3/{version}``: the gateway's OpenAPI documents.

Each API version's document is rendered by codegen (``generated/v0_0_XX/openapi.json``: the spec
slurmrestd writes, with the gateway's security schemes, scopes, cache policies and endpoints).
``/openapi/v3`` merges the versions served, as slurmrestd's own ``/openapi/v3`` does; both need no
credentials. Documents are read and encoded once per set of served versions.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from slurmgate.server.keys import UPSTREAM_VERSIONS
from slurmgate.server.pipeline.route import not_served

__all__ = ["document", "merged", "openapi", "openapi_version"]


@cache
def document(version: str) -> dict[str, Any]:
    """The gateway's OpenAPI document of ``version`` (a generated one)."""
    package = f"slurmgate.generated.{version.replace('.', '_')}"
    text = resources.files(package).joinpath("openapi.json").read_text(encoding="utf-8")
    parsed: dict[str, Any] = json.loads(text)
    parsed.pop("x-slurmgate-generated", None)
    return parsed


def merged(versions: tuple[str, ...]) -> dict[str, Any]:
    """One document for ``versions`` (oldest first): their paths and components together.

    Component names carry their version (``v0.0.45_job_info``), and the gateway's own components
    are the same in every version, so nothing collides. ``info`` is the newest version's.
    """
    if not versions:
        return {"openapi": "3.0.3", "info": {"title": "slurmgate", "version": "none"}, "paths": {}}
    result: dict[str, Any] = json.loads(json.dumps(document(versions[-1])))
    for version in versions[:-1]:
        other = document(version)
        result["paths"].update(other["paths"])
        for kind, entries in other.get("components", {}).items():
            result["components"].setdefault(kind, {}).update(entries)
    result["paths"] = dict(sorted(result["paths"].items()))
    return result


@cache
def _encoded(versions: tuple[str, ...]) -> bytes:
    return json.dumps(merged(versions), sort_keys=True).encode()


@cache
def _encoded_one(version: str) -> bytes:
    return json.dumps(document(version), sort_keys=True).encode()


def _answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", headers={"Server": "slurmgate"})


async def openapi(request: web.Request) -> web.Response:
    """The document of every API version served."""
    return _answer(_encoded(request.app[UPSTREAM_VERSIONS].served))


async def openapi_version(request: web.Request) -> web.Response:
    """The document of one API version served; 404 naming the served ones otherwise."""
    served = request.app[UPSTREAM_VERSIONS].served
    version = request.match_info["version"]
    if version not in served:
        raise not_served(version, served)
    return _answer(_encoded_one(version))
