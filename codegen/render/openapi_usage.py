"""The OpenAPI description of ``GET /slurmgate/v1/usage`` (server/endpoints/usage.py).

Kept apart from openapi.py, which assembles it into the document with the scope, cache policy,
cache headers and error answers every own endpoint shares.
"""

from __future__ import annotations

from typing import Any

__all__ = ["USAGE_DESCRIPTION", "USAGE_PARAMETERS", "USAGE_SCHEMAS", "USAGE_SUMMARY"]

Json = dict[str, Any]

USAGE_SUMMARY = "TRES usage and job counts per account and/or user over a time window"
USAGE_DESCRIPTION = (
    "Computed from slurmdbd's job records (`GET /slurmdb/<newest version>/jobs`, as the caller, "
    "one day of the window per upstream call): each job counts for the part of its run inside "
    "[start, end), a running job up to now; TRES-seconds are the allocated count times those "
    "seconds (memory in MB), TRES-minutes the same / 60. A token with account patterns sees only "
    "jobs of accounts they match; naming another account is a 403. See docs/usage.md."
)

_TIME = (
    "RFC 3339 with a zone (2026-11-21T10:00:00Z), a date (midnight UTC), seconds since the "
    "epoch, or `now`"
)
USAGE_PARAMETERS: list[Json] = [
    {
        "name": "start",
        "in": "query",
        "required": True,
        "description": f"the window's start (included): {_TIME}",
        "schema": {"type": "string"},
    },
    {
        "name": "end",
        "in": "query",
        "required": False,
        "description": f"the window's end (excluded; default now), at most 366 days after start: "
        f"{_TIME}",
        "schema": {"type": "string"},
    },
    {
        "name": "account",
        "in": "query",
        "required": False,
        "description": "only these accounts, comma-separated (at most 64)",
        "schema": {"type": "string"},
    },
    {
        "name": "user",
        "in": "query",
        "required": False,
        "description": "only these users, comma-separated (at most 64)",
        "schema": {"type": "string"},
    },
    {
        "name": "group_by",
        "in": "query",
        "required": False,
        "description": "what a group is (default account)",
        "schema": {"type": "string", "enum": ["account", "user", "account,user"]},
    },
]

_TRES_NAMES = ("cpu", "mem", "gres/gpu", "billing", "node")
_TRES_SECONDS: Json = {
    "type": "object",
    "properties": {name: {"type": "integer"} for name in _TRES_NAMES},
}
_TRES_MINUTES: Json = {
    "type": "object",
    "properties": {name: {"type": "number"} for name in _TRES_NAMES},
}
_AMOUNTS: Json = {
    "jobs": {"type": "integer", "description": "jobs whose run overlaps the window"},
    "tres_minutes": _TRES_MINUTES,
    "tres_seconds": _TRES_SECONDS,
}
_STRINGS: Json = {"type": "array", "items": {"type": "string"}}

USAGE_SCHEMAS: Json = {
    "slurmgate_usage_resp": {
        "type": "object",
        "required": ["window", "group_by", "groups", "total", "meta", "errors", "warnings"],
        "properties": {
            "window": {
                "type": "object",
                "properties": {
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                    "start_time": {"type": "integer"},
                    "end_time": {"type": "integer"},
                },
            },
            "group_by": _STRINGS,
            "accounts": _STRINGS,
            "users": _STRINGS,
            "cluster": {"type": "string", "nullable": True},
            "computed_at": {
                "type": "integer",
                "description": "when the answer was computed: running jobs count up to it",
            },
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "account": {"type": "string"},
                        "user": {"type": "string"},
                        **_AMOUNTS,
                    },
                },
            },
            "total": {"type": "object", "properties": _AMOUNTS},
            "running_jobs": {"type": "integer"},
            "meta": {"type": "object", "additionalProperties": True},
            "errors": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "warnings": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": True},
            },
        },
    }
}
