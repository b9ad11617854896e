"""Render the gateway's own OpenAPI document of an API version: ``generated/v0_0_XX/openapi.json``.

It is the (fixed) spec slurmrestd writes, extended with what the gateway adds, so that a client
generated from it works against the gateway:

- security: the gateway's token as ``Authorization: Bearer`` or ``X-SLURM-USER-TOKEN`` (with an
  optional matching ``X-SLURM-USER-NAME``) and MUNGE, in place of Slurm's JWT schemes;
- per operation: the scope it needs (``x-scopes``, also in the description), whether it writes,
  its cache policy and group or the groups it invalidates (``x-slurmgate-cache``), the account
  locations checked for account-limited tokens, the gateway's error answers (400, 401, 403, 413,
  502, 504), and on cached reads the ``Cache-Control`` request header and the cache headers of
  the answer;
- the gateway's own endpoints, as ``policies/endpoints/*.yaml`` declare them (``api.own``): the
  declared summary, description, parameters, responses and schemas, plus what follows from the
  declared access, scope and cache policy, added here the same way for every endpoint: security
  (none for public endpoints, optional for ``optional`` ones), ``x-scopes``, the scope and cache
  sentence of the description, 401 and 403, and for cached ones the ``Cache-Control`` parameter
  and the cache headers of the 200. The server registers the same declarations from
  ``generated/endpoints.py``.

OpenAPI 3.0 gives scopes only to OAuth2 schemes, hence the ``x-scopes`` extension. The text is
JSON with sorted keys and one-space indentation (diffs stay readable across Slurm upgrades), led
by a ``x-slurmgate-generated`` key carrying the "do not edit" marker write.py looks for.
"""

from __future__ import annotations

import json
from typing import Any

from slurmgate.codegen.ir import ApiSpec, OwnEndpoints, OwnOperation, Route
from slurmgate.codegen.render.header import MARKER
from slurmgate.policies.routing import Access, CachePolicy

__all__ = ["ERROR_SCHEMA", "GATEWAY_SECURITY", "render_openapi"]

Json = dict[str, Any]

#: Name of the schema of the gateway's own error answers (slurmrestd's envelope, no data).
ERROR_SCHEMA = "slurmgate_error_resp"
#: Alternatives a request may use to authenticate, in the order the gateway tries them.
GATEWAY_SECURITY: list[Json] = [
    {"bearerAuth": []},
    {"token": []},
    {"token": [], "user": []},
    {"munge": []},
]

_SCHEMES: Json = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A slurmgate token (`slurmgate token create`), shaped like a Slurm JWT",
    },
    "token": {
        "type": "apiKey",
        "in": "header",
        "name": "X-SLURM-USER-TOKEN",
        "description": "The same slurmgate token, where slurmrestd clients send their Slurm JWT",
    },
    "user": {
        "type": "apiKey",
        "in": "header",
        "name": "X-SLURM-USER-NAME",
        "description": "Optional with X-SLURM-USER-TOKEN; when sent it must name the token's user",
    },
    "munge": {
        "type": "http",
        "scheme": "MUNGE",
        "description": (
            "`Authorization: MUNGE <credential>` with a credential from `munge -n`, for callers on "
            "the cluster when the site enables it"
        ),
    },
}

_ERROR: Json = {
    "type": "object",
    "description": "An error the gateway answers itself, in slurmrestd's envelope",
    "properties": {
        "meta": {"type": "object", "additionalProperties": True},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "error_number": {"type": "integer", "description": "the HTTP status"},
                    "description": {"type": "string"},
                    "source": {"type": "string"},
                },
            },
        },
        "warnings": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
}

_GATEWAY_ERRORS = {
    "400": "The request cannot be read (path parameter, Cache-Control, body)",
    "401": "No valid credentials (comes with WWW-Authenticate)",
    "403": "The caller lacks the scope, account, group or network the operation needs",
    "502": "slurmrestd cannot be reached or answered something that is not HTTP",
    "504": "slurmrestd did not answer in time",
}
_BODY_ERRORS = {"413": "The body is larger than the gateway accepts"}

_CACHE_HEADERS: Json = {
    "X-Cache": {
        "description": "HIT, MISS, STALE (stale-if-error) or BYPASS",
        "schema": {"type": "string", "enum": ["HIT", "MISS", "STALE", "BYPASS"]},
    },
    "Age": {
        "description": "Seconds since slurmrestd produced the answer (stored answers only)",
        "schema": {"type": "integer"},
    },
    "Cache-Control": {
        "description": "max-age: seconds the answer is fresh for (stored answers only)",
        "schema": {"type": "string"},
    },
    "X-Cache-Generated-At": {
        "description": "When slurmrestd was asked, RFC 3339 UTC (stored answers only)",
        "schema": {"type": "string", "format": "date-time"},
    },
    "X-Cache-Upstream-Seconds": {
        "description": "Seconds slurmrestd took to answer (stored answers only)",
        "schema": {"type": "string"},
    },
}
_CACHE_CONTROL: Json = {
    "name": "Cache-Control",
    "in": "header",
    "required": False,
    "description": (
        "no-cache or max-age=0: a fresh answer from slurmrestd; max-age=N: a stored answer at "
        "most N seconds old; no-store: bypass the cache; stale-if-error[=N]: the last stored "
        "answer if slurmrestd fails"
    ),
    "schema": {"type": "string"},
}


def render_openapi(api: ApiSpec) -> str:
    """The gateway's OpenAPI document of ``api``, as the text of ``openapi.json``."""
    document: Json = json.loads(api.document)
    info = document.setdefault("info", {})
    info["title"] = "Slurm REST API through slurmgate"
    info["description"] = (
        "slurmrestd's API as served by slurmgate: same paths and bodies (also under "
        "`/slurm/latest/` and `/slurmdb/latest/`), authenticated with slurmgate tokens, "
        "authorized by scope and account, reads cached. "
        f"Generated from the spec of Slurm {api.slurm_release}."
    )
    components = document.setdefault("components", {})
    components["securitySchemes"] = _SCHEMES
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = _ERROR
    schemas.update(json.loads(api.own.schemas))
    components["headers"] = _CACHE_HEADERS
    components["parameters"] = {"slurmgate_cache_control": _CACHE_CONTROL}
    components.setdefault("responses", {}).update(
        {
            f"slurmgate_{status}": _error_response(text)
            for status, text in {**_GATEWAY_ERRORS, **_BODY_ERRORS}.items()
        }
    )
    document["security"] = GATEWAY_SECURITY
    for route in api.routes:
        operation = document["paths"][route.operation.path][route.operation.method.lower()]
        _extend(operation, route)
    document["paths"].update(_declared_paths(api.own))
    tags = document.setdefault("tags", [])
    tags.append({"name": "slurmgate", "description": "the gateway's own endpoints"})
    body = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False)
    marker = json.dumps(f"rendered by `make regen` from specs/{api.version}.json, {MARKER}")
    # First key, so that write.py finds the marker in the first bytes of the file.
    return '{\n "x-slurmgate-generated": ' + marker + ",\n" + body[2:] + "\n"


def _error_response(text: str) -> Json:
    return {
        "description": text,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}
        },
    }


def _extend(operation: Json, route: Route) -> None:
    """Add the gateway's decisions about ``route`` to its operation object."""
    operation.pop("security", None)  # the document's: the gateway's schemes, for every operation
    operation["x-scopes"] = [route.scope]
    operation["x-slurmgate-mutating"] = route.mutating
    lines = [f"slurmgate: needs the scope `{route.scope}`."]
    if route.cache is CachePolicy.NONE:
        cache: Json = {"policy": str(route.cache)}
        if route.invalidates:
            cache["invalidates"] = list(route.invalidates)
            lines.append(f"Invalidates the cached reads of: {', '.join(route.invalidates)}.")
    else:
        cache = {"policy": str(route.cache), "group": route.cache_group}
        lines.append(_cache_sentence(route.cache, route.cache_group))
    operation["x-slurmgate-cache"] = cache
    if route.mutating and route.accounts:
        where = ", ".join(str(location) for location in route.accounts)
        lines.append(f"Account-limited tokens: the accounts at {where} must be allowed.")
    summary = operation.get("description") or ""
    operation["description"] = (summary + "\n\n" if summary else "") + " ".join(lines)
    responses = operation.setdefault("responses", {})
    errors = dict(_GATEWAY_ERRORS)
    if "requestBody" in operation:
        errors.update(_BODY_ERRORS)
    for status in sorted(errors):
        responses.setdefault(status, {"$ref": f"#/components/responses/slurmgate_{status}"})
    if route.cache is not CachePolicy.NONE:
        parameters = operation.setdefault("parameters", [])
        parameters.append({"$ref": "#/components/parameters/slurmgate_cache_control"})
        ok = responses.get("200")
        if isinstance(ok, dict) and "$ref" not in ok:
            ok["headers"] = {
                name: {"$ref": f"#/components/headers/{name}"} for name in sorted(_CACHE_HEADERS)
            }


def _cache_sentence(policy: CachePolicy, group: str) -> str:
    return f"Cached (policy {policy}, group {group}); see the X-Cache headers."


def _declared_paths(own: OwnEndpoints) -> Json:
    """The path items of the gateway's own endpoints."""
    paths: Json = {}
    for operation in own.operations:
        paths.setdefault(operation.row.path, {})[operation.row.method.lower()] = (
            _declared_operation(operation)
        )
    return paths


def _declared_operation(operation: OwnOperation) -> Json:
    """One own endpoint's operation: as declared, plus what its access, scope and cache imply."""
    row = operation.row
    result: Json = json.loads(operation.openapi)
    result["operationId"] = row.operation_id
    result["tags"] = ["slurmgate"]
    if row.access is Access.PUBLIC:
        result["security"] = []
        return result
    if row.access is Access.OPTIONAL:
        # {}: no credentials at all is an alternative too
        result["security"] = [{}, *GATEWAY_SECURITY]
    lines = [f"slurmgate: needs the scope `{row.scope}`."]
    cache: Json = {"policy": str(row.cache)}
    if row.cache is not CachePolicy.NONE:
        cache["group"] = row.cache_group
        lines.append(_cache_sentence(row.cache, row.cache_group))
    described = result.get("description") or ""
    result["description"] = (described + " " if described else "") + " ".join(lines)
    result["x-scopes"] = [row.scope]
    result["x-slurmgate-mutating"] = False
    result["x-slurmgate-cache"] = cache
    responses = result["responses"]
    for status in ("401", "403"):
        responses.setdefault(status, {"$ref": f"#/components/responses/slurmgate_{status}"})
    if row.cache is not CachePolicy.NONE:
        result.setdefault("parameters", []).append(
            {"$ref": "#/components/parameters/slurmgate_cache_control"}
        )
        responses["200"]["headers"] = {
            name: {"$ref": f"#/components/headers/{name}"} for name in sorted(_CACHE_HEADERS)
        }
    return result
