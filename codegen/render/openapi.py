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
- the gateway's own endpoints (``/meta/versions``, ``/openapi/v3``, ``/health``, ``/metrics``,
  ``/hardware/table``, ``/hardware/stats``, ``/hardware/avail``, ``/slurmgate/v1/events/jobs``
  from openapi_events.py, ``/slurmgate/v1/usage`` from openapi_usage.py), with the scopes those
  that take credentials need and the cache policies of the cached ones (the server takes both
  from ``policies/``; tests/generated/test_openapi_documents.py checks that they agree).

OpenAPI 3.0 gives scopes only to OAuth2 schemes, hence the ``x-scopes`` extension. The text is
JSON with sorted keys and one-space indentation (diffs stay readable across Slurm upgrades), led
by a ``x-slurmgate-generated`` key carrying the "do not edit" marker write.py looks for.
"""

from __future__ import annotations

import json
from typing import Any

from slurmgate.codegen.ir import ApiSpec, Route
from slurmgate.codegen.render.header import MARKER
from slurmgate.codegen.render.openapi_events import (
    EVENTS_PATH,
    EVENTS_SCHEMAS,
    EVENTS_SCOPE,
    events_operation,
)
from slurmgate.codegen.render.openapi_usage import (
    USAGE_DESCRIPTION,
    USAGE_PARAMETERS,
    USAGE_SCHEMAS,
    USAGE_SUMMARY,
)
from slurmgate.policies.routing import CachePolicy

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
    schemas.update(_HARDWARE_SCHEMAS)
    schemas.update(EVENTS_SCHEMAS)
    schemas.update(USAGE_SCHEMAS)
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
    document["paths"].update(_own_paths(api.version))
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
        lines.append(
            f"Cached (policy {route.cache}, group {route.cache_group}); see the X-Cache headers."
        )
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


#: The answer of GET /health: the status for everyone, the checks for slurmgate:health.
_HEALTH: Json = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "failing"]},
        "checked_at": {
            "type": "string",
            "format": "date-time",
            "description": "when the checks ran (callers with slurmgate:health only)",
        },
        "checks": {
            "type": "object",
            "description": (
                "slurmctld, slurmdbd, cache, slurm_user_token (callers with slurmgate:health only)"
            ),
            "additionalProperties": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "degraded", "failing", "skipped"]},
                    "error": {"type": "string"},
                    "seconds": {"type": "number"},
                },
                "additionalProperties": True,
            },
        },
    },
}


def _scoped(scope: str, summary: str, description: str) -> Json:
    """An own endpoint that takes the gateway's credentials and needs ``scope``."""
    return {
        "summary": summary,
        "description": f"{description} slurmgate: needs the scope `{scope}`.",
        "tags": ["slurmgate"],
        "x-scopes": [scope],
        "x-slurmgate-mutating": False,
        "x-slurmgate-cache": {"policy": "none"},
    }


def _own_paths(version: str) -> Json:
    """The gateway's own endpoints: public ones (no credentials), and /health and /metrics."""
    document_answer = {
        "200": {
            "description": "an OpenAPI 3.0 document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    return {
        "/meta/versions": {
            "get": {
                "operationId": "slurmgate_get_meta_versions",
                "summary": "API versions this gateway serves",
                "tags": ["slurmgate"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "served versions, oldest first, and the newest",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "versions": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "version": {"type": "string"},
                                                    "slurm_release": {"type": "string"},
                                                },
                                            },
                                        },
                                        "latest": {"type": "string", "nullable": True},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        },
        "/openapi/v3": {
            "get": {
                "operationId": "slurmgate_get_openapi",
                "summary": "this document for every API version served",
                "tags": ["slurmgate"],
                "security": [],
                "responses": document_answer,
            }
        },
        "/health": {
            "get": {
                **_scoped(
                    "slurmgate:health",
                    "the gateway's health: slurmctld, slurmdbd, cache, SlurmUser token",
                    "Needs no credentials and then answers only the status; credentials that are "
                    "sent must be valid and carry the scope, and then every check is shown.",
                ),
                "operationId": "slurmgate_get_health",
                # {}: no credentials at all is an alternative too
                "security": [{}, *GATEWAY_SECURITY],
                "responses": {
                    "200": _health_answer("every check is ok"),
                    "401": {"$ref": "#/components/responses/slurmgate_401"},
                    "403": {"$ref": "#/components/responses/slurmgate_403"},
                    "503": _health_answer(
                        "degraded (some checks fail, requests are still served) or failing"
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                **_scoped(
                    "slurmgate:metrics",
                    "the gateway's Prometheus metrics",
                    "Prometheus text format, or OpenMetrics when Accept asks for it.",
                ),
                "operationId": "slurmgate_get_metrics",
                "responses": {
                    "200": {
                        "description": "the metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {"$ref": "#/components/responses/slurmgate_401"},
                    "403": {"$ref": "#/components/responses/slurmgate_403"},
                },
            }
        },
        **_hardware_paths(),
        EVENTS_PATH: {
            "get": events_operation(
                _scoped(
                    EVENTS_SCOPE,
                    "live job events: jobs appearing, changing state and leaving (SSE)",
                    "Server-Sent Events from one poller per gateway shared by every client: the "
                    "jobs the token may see (its account patterns; only its own with per_user), "
                    "filtered by the query. Reconnect with Last-Event-ID to get what was missed. "
                    "Never cached.",
                )
            )
        },
        **_usage_paths(),
        f"/openapi/v3/{version}": {
            "get": {
                "operationId": f"slurmgate_get_openapi_{version.replace('.', '')}",
                "summary": f"this document, for {version} only",
                "tags": ["slurmgate"],
                "security": [],
                "responses": document_answer,
            }
        },
    }


def _health_answer(text: str) -> Json:
    return {"description": text, "content": {"application/json": {"schema": _HEALTH}}}


# --- /hardware/table, /hardware/stats, /hardware/avail ------------------------------------------

#: (name, summary, description, cache policy as in policies/cache.toml)
_HARDWARE = (
    (
        "table",
        "the cluster's node groups: CPUs, memory, GPUs, features, counts, partitions",
        "Nodes grouped by hardware (CPUs, sockets, cores, threads, memory in MiB, GPUs per type "
        "from their gres, features), with their partitions, and the partitions' totals.",
        "normal",
    ),
    (
        "stats",
        "the cluster's totals: nodes, CPUs, memory, GPUs, allocations, nodes by state",
        "Totals over the nodes, what jobs hold of them, and how many nodes are in each base "
        "state and carry each flag.",
        "short",
    ),
    (
        "avail",
        "what is free now, per node group",
        "Per node group: the nodes available now (IDLE or MIXED, no flag such as DRAIN, RESERVED "
        "or POWERED_DOWN, in a partition that is UP), and the CPUs, memory and GPUs free on them.",
        "short",
    ),
)
_INT: Json = {"type": "integer"}
_STRINGS: Json = {"type": "array", "items": {"type": "string"}}
_GPUS: Json = {
    "type": "array",
    "description": "GPUs per type; type is null for GPUs slurm.conf gives no type",
    "items": {
        "type": "object",
        "required": ["type", "count"],
        "properties": {"type": {"type": "string", "nullable": True}, "count": _INT},
    },
}
_AMOUNTS: Json = {
    "type": "object",
    "properties": {"cpus": _INT, "real_memory": _INT, "gpus": _INT},
}
_GROUP_PROPERTIES: Json = {
    "cpus": _INT,
    "sockets": _INT,
    "cores_per_socket": _INT,
    "threads_per_core": _INT,
    "real_memory": {"type": "integer", "description": "MiB per node"},
    "gpus": _GPUS,
    "gpus_per_node": _INT,
    "features": _STRINGS,
    "partitions": _STRINGS,
    "node_count": _INT,
}
_ENVELOPE: Json = {
    "partition": {
        "type": "string",
        "nullable": True,
        "description": "the partition asked for with ?partition=, or null",
    },
    "last_update": {"type": "object", "additionalProperties": True},
    "meta": {"type": "object", "additionalProperties": True},
    "errors": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    "warnings": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
}
_HARDWARE_SCHEMAS: Json = {
    "slurmgate_hardware_table_resp": {
        "type": "object",
        "required": ["groups", "partitions", "meta", "errors", "warnings"],
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {**_GROUP_PROPERTIES, "nodes": _STRINGS, "total": _AMOUNTS},
                },
            },
            "partitions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "state": _STRINGS,
                        "node_count": _INT,
                        "cpus": _INT,
                        "real_memory": _INT,
                        "gpus": _INT,
                    },
                },
            },
            **_ENVELOPE,
        },
    },
    "slurmgate_hardware_stats_resp": {
        "type": "object",
        "required": ["stats", "meta", "errors", "warnings"],
        "properties": {
            "stats": {
                "type": "object",
                "properties": {
                    "nodes": _INT,
                    "groups": _INT,
                    "partitions": _INT,
                    "cpus": _INT,
                    "real_memory": _INT,
                    "gpus": _INT,
                    "gpus_by_type": _GPUS,
                    "allocated": _AMOUNTS,
                    "node_states": {"type": "object", "additionalProperties": _INT},
                    "node_flags": {"type": "object", "additionalProperties": _INT},
                },
            },
            **_ENVELOPE,
        },
    },
    "slurmgate_hardware_avail_resp": {
        "type": "object",
        "required": ["groups", "total", "meta", "errors", "warnings"],
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        **_GROUP_PROPERTIES,
                        "available_nodes": _STRINGS,
                        "idle_nodes": _INT,
                        "mixed_nodes": _INT,
                        "free": {
                            "type": "object",
                            "properties": {**_AMOUNTS["properties"], "gpus_by_type": _GPUS},
                        },
                        "largest_free": _AMOUNTS,
                    },
                },
            },
            "total": {
                "type": "object",
                "properties": {
                    "idle_nodes": _INT,
                    "mixed_nodes": _INT,
                    "cpus": _INT,
                    "real_memory": _INT,
                    "gpus": _INT,
                },
            },
            **_ENVELOPE,
        },
    },
}
_PARTITION_PARAMETER: Json = {
    "name": "partition",
    "in": "query",
    "required": False,
    "description": "only this partition and its nodes (404 when there is no such partition)",
    "schema": {"type": "string"},
}


def _hardware_paths() -> Json:
    """The hardware endpoints: scope slurmgate:hardware, cached in group hardware."""
    paths: Json = {}
    for name, summary, description, policy in _HARDWARE:
        operation = _scoped(
            "slurmgate:hardware",
            summary,
            description + " Computed from slurmrestd's nodes and partitions (the newest API "
            f"version it serves, as the caller). Cached (policy {policy}, group hardware); see "
            "the X-Cache headers.",
        )
        operation["x-slurmgate-cache"] = {"policy": policy, "group": "hardware"}
        operation["operationId"] = f"slurmgate_get_hardware_{name}"
        operation["parameters"] = [
            _PARTITION_PARAMETER,
            {"$ref": "#/components/parameters/slurmgate_cache_control"},
        ]
        ok_schema = {"$ref": f"#/components/schemas/slurmgate_hardware_{name}_resp"}
        operation["responses"] = {
            "200": {
                "description": f"the hardware {name}",
                "content": {"application/json": {"schema": ok_schema}},
                "headers": {
                    header: {"$ref": f"#/components/headers/{header}"}
                    for header in sorted(_CACHE_HEADERS)
                },
            },
            **{
                status: {"$ref": f"#/components/responses/slurmgate_{status}"}
                for status in sorted(_GATEWAY_ERRORS)
            },
            "404": _error_response("?partition= names no partition"),
            "406": _error_response("Accept excludes application/json, the only type answered"),
        }
        paths[f"/hardware/{name}"] = {"get": operation}
    return paths


def _usage_paths() -> Json:
    """The usage report: scope slurmdb:read, cached in group db-jobs (openapi_usage.py)."""
    operation = _scoped("slurmdb:read", USAGE_SUMMARY, USAGE_DESCRIPTION)
    operation["x-slurmgate-cache"] = {"policy": "normal", "group": "db-jobs"}
    operation["operationId"] = "slurmgate_get_usage"
    operation["parameters"] = [
        *USAGE_PARAMETERS,
        {"$ref": "#/components/parameters/slurmgate_cache_control"},
    ]
    operation["responses"] = {
        "200": {
            "description": "usage per group, and the total",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/slurmgate_usage_resp"}
                }
            },
            "headers": {
                header: {"$ref": f"#/components/headers/{header}"}
                for header in sorted(_CACHE_HEADERS)
            },
        },
        **{
            status: {"$ref": f"#/components/responses/slurmgate_{status}"}
            for status in sorted(_GATEWAY_ERRORS)
        },
        "406": _error_response("Accept excludes application/json, the only type answered"),
    }
    return {"/slurmgate/v1/usage": {"get": operation}}
