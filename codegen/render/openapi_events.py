"""The job events endpoint in the gateway's OpenAPI document (``/slurmgate/v1/events/jobs``).

Kept apart from openapi.py, which renders the rest: the operation object and the schemas of its
events. OpenAPI 3.0 cannot type the events of a ``text/event-stream``; the answer is a string,
and each event's ``data`` is described by a schema of ``components.schemas``
(``slurmgate_job_event`` and the others), named in the description.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EVENTS_PATH", "EVENTS_SCHEMAS", "EVENTS_SCOPE", "events_operation"]

Json = dict[str, Any]

EVENTS_PATH = "/slurmgate/v1/events/jobs"
EVENTS_SCOPE = "slurmgate:events"

_NULLABLE_INT: Json = {"type": "integer", "nullable": True}
_NULLABLE_STR: Json = {"type": "string", "nullable": True}

_JOB: Json = {
    "type": "object",
    "description": "A job as slurmctld shows it (times are UNIX seconds; null when unset)",
    "required": ["job_id", "user", "account", "partition", "state"],
    "properties": {
        "job_id": {"type": "integer"},
        "name": _NULLABLE_STR,
        "user": {"type": "string"},
        "account": {"type": "string", "description": "lowercased"},
        "partition": {
            "type": "string",
            "description": "one partition, or several separated by ',' (a pending job)",
        },
        "state": {
            "type": "array",
            "items": {"type": "string"},
            "description": "base state and flags, as slurmrestd's job_state",
        },
        "reason": _NULLABLE_STR,
        "nodes": _NULLABLE_STR,
        "array_job_id": _NULLABLE_INT,
        "array_task_id": _NULLABLE_INT,
        "het_job_id": _NULLABLE_INT,
        "submit_time": _NULLABLE_INT,
        "start_time": _NULLABLE_INT,
        "end_time": _NULLABLE_INT,
        "exit_code": _NULLABLE_INT,
    },
}

EVENTS_SCHEMAS: Json = {
    "slurmgate_event_job": _JOB,
    "slurmgate_job_event": {
        "type": "object",
        "description": "data of the events appeared, changed and left",
        "required": ["id", "event", "why", "time", "job"],
        "properties": {
            "id": {"type": "string", "description": "EPOCH-N, as the event's id: line"},
            "event": {"type": "string", "enum": ["appeared", "changed", "left"]},
            "why": {
                "type": "string",
                "enum": ["new", "matches", "state", "fields", "gone", "no_longer_matches"],
            },
            "time": {"type": "string", "format": "date-time"},
            "job": {"$ref": "#/components/schemas/slurmgate_event_job"},
            "previous": {
                "type": "object",
                "description": "changed only: the tracked fields before",
                "properties": {
                    "state": {"type": "array", "items": {"type": "string"}},
                    "account": {"type": "string"},
                    "partition": {"type": "string"},
                },
            },
        },
    },
    "slurmgate_job_snapshot": {
        "type": "object",
        "description": "data of the events snapshot and resync: every job the stream shows now",
        "required": ["id", "event", "reason", "time", "jobs"],
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string", "enum": ["snapshot", "resync"]},
            "reason": {
                "type": "string",
                "nullable": True,
                "enum": ["unknown_stream", "too_old", "unknown_id", None],
            },
            "time": {"type": "string", "format": "date-time"},
            "jobs": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/slurmgate_event_job"},
            },
        },
    },
    "slurmgate_stream_end": {
        "type": "object",
        "description": "data of the last event, end",
        "required": ["event", "reason", "description", "last_id"],
        "properties": {
            "event": {"type": "string", "enum": ["end"]},
            "reason": {
                "type": "string",
                "enum": ["slow_consumer", "shutdown", "max_duration", "credentials"],
            },
            "description": {"type": "string"},
            "last_id": {"type": "string", "description": "the last event id sent to this client"},
        },
    },
}

_FILTERS = (
    ("user", "only the jobs of these users"),
    ("account", "only the jobs of these accounts"),
    ("partition", "only the jobs in these partitions"),
    ("job_id", "only these jobs (an array's id: every task; a HetJob leader's: every component)"),
)


def events_operation(base: Json) -> Json:
    """The GET operation of the events endpoint; ``base`` carries its scope (openapi._scoped)."""
    parameters: list[Json] = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text + "; repeat the parameter or separate values with ','",
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
        }
        for name, text in _FILTERS
    ]
    parameters.append(
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "the id of the last event received: the missed events are sent "
            "first, or a resync when they are no longer kept",
            "schema": {"type": "string"},
        }
    )
    stream = (
        "A text/event-stream: a retry line; a snapshot event (data: slurmgate_job_snapshot), "
        "the missed events (with Last-Event-ID) or a resync; then appeared, changed and left "
        "events (data: slurmgate_job_event), heartbeat comments, and an end event "
        "(data: slurmgate_stream_end). See docs/events.md."
    )
    return {
        **base,
        "operationId": "slurmgate_get_events_jobs",
        "parameters": parameters,
        "responses": {
            "200": {
                "description": stream,
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **{
                status: {"$ref": f"#/components/responses/slurmgate_{status}"}
                for status in ("400", "401", "403", "502", "504")
            },
            "406": _error("Accept excludes text/event-stream, the only type answered"),
            "429": _error(
                "the caller has events.max_subscribers_per_caller streams open, or is over its "
                "rate limit (comes with Retry-After)"
            ),
            "503": _error(
                "events.max_subscribers streams are open on this gateway, or the upstream queue "
                "is full (comes with Retry-After)"
            ),
        },
    }


def _error(text: str) -> Json:
    return {
        "description": text,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/slurmgate_error_resp"}}
        },
    }
