"""``GET /slurmgate/v1/usage``: TRES usage per account and/or user over a window.

Computed from ``GET /slurmdb/<newest version>/jobs`` read as the caller (Slurm's PrivateData
applies as for any forwarded read), one day of the window per upstream call, at most
``MAX_SLICES_AT_ONCE`` calls at a time, by the pure functions of server/usage/. Declared in
policies/endpoints/usage.yaml: the scope ``slurmdb:read``; cached by the cache step like
slurmrestd's reads, in the group ``db-jobs``, so a job submitted or changed through the gateway
makes the next report fresh.

A token with account patterns sees only jobs whose own account matches one of them, whatever it
asks (``group_by=user`` too), and naming any other account is a 403. The cache step keys the
gateway's own endpoints by the token's patterns as well, so an answer computed for one set of
patterns is never served to another. docs/usage.md documents the query and the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from slurmgate.server.cache.store import Answer
from slurmgate.server.errors import BadRequest, Forbidden, NotAcceptable, UpstreamUnavailable
from slurmgate.server.identity.base import Identity
from slurmgate.server.keys import IDENTITY, UPSTREAM_SECONDS, UPSTREAM_STATUS, UPSTREAM_VERSIONS
from slurmgate.server.pipeline.cache import encode_json, json_answer, read_through
from slurmgate.server.upstream.acting import send_as
from slurmgate.server.upstream.transport import UpstreamResponse
from slurmgate.server.usage.records import Job, UnreadableJobs, read_jobs
from slurmgate.server.usage.report import summarize
from slurmgate.server.usage.request import QueryRefused, UsageQuery, read_query, slices

__all__ = ["MAX_SLICES_AT_ONCE", "usage"]

log = logging.getLogger("slurmgate.usage")

#: Upstream calls one report has under way at once (each also takes a slot of the upstream gate).
MAX_SLICES_AT_ONCE = 4
_SOURCE = "slurmgate usage"
_JSON_TYPES = frozenset({"", "*/*", "application/*", "application/json"})
_PLUGIN = {
    "type": "slurmgate",
    "name": "slurmgate usage",
    "data_parser": "",
    "accounting_storage": "",
}

Json = dict[str, Any]


def _check_accept(request: web.Request) -> None:
    """406 unless Accept is absent or means JSON."""
    accept = ",".join(request.headers.getall("Accept", []))
    if not {part.split(";")[0].strip().lower() for part in accept.split(",")} <= _JSON_TYPES:
        raise NotAcceptable(
            "GET /slurmgate/v1/usage answers application/json only; send Accept: "
            "application/json or none",
            source="Accept",
        )


def _restriction(identity: Identity, query: UsageQuery) -> Callable[[str], bool]:
    """Which accounts' jobs the caller may see; 403 for a named account outside its patterns."""
    patterns = identity.accounts
    if not patterns:
        return lambda account: True

    def allowed(account: str) -> bool:
        return any(pattern.fullmatch(account) for pattern in patterns)

    for account in query.accounts:
        if not allowed(account):
            raise Forbidden(
                f"{identity.name} may not read the usage of Slurm account {account}",
                source=f"account:{account}",
            )
    return allowed


def _target(version: str, query: UsageQuery, start: int, end: int) -> str:
    params = [
        ("start_time", str(start)),
        ("end_time", str(end)),
        ("skip_steps", "true"),
        # Whole runs, clipped here: truncated times would differ from slice to slice.
        ("disable_truncate_usage_time", "true"),
        # Every run of a requeued job used resources, as slurmdbd's rollup counts them.
        ("show_duplicates", "true"),
    ]
    if query.accounts:
        params.append(("account", ",".join(query.accounts)))
    if query.users:
        params.append(("users", ",".join(query.users)))
    return f"/slurmdb/{version}/jobs?{urlencode(params, safe=',')}"


def _descriptions(errors: object) -> list[str]:
    if not isinstance(errors, list):
        return []
    return [
        str(error.get("description") or error.get("error") or "an error")[:200]
        for error in errors
        if isinstance(error, Mapping)
    ]


def _read_slice(answer: UpstreamResponse, target: str) -> tuple[Json, list[Job], list[object]]:
    """One slice's ``meta.slurm``, job records and warnings; 502 naming what is wrong."""
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        data = None
    path = target.partition("?")[0]
    if answer.status != 200 or not isinstance(data, dict):
        detail = "; ".join(_descriptions(data.get("errors"))) if isinstance(data, dict) else ""
        raise UpstreamUnavailable(
            f"slurmrestd answered GET {path} with {answer.status}"
            + (f": {detail}" if detail else ""),
            source=_SOURCE,
        )
    errors = _descriptions(data.get("errors"))
    if errors:
        raise UpstreamUnavailable(
            f"slurmrestd reported errors for GET {path}: {'; '.join(errors)}", source=_SOURCE
        )
    meta = data.get("meta")
    slurm = meta.get("slurm") if isinstance(meta, dict) else None
    if not isinstance(slurm, dict) or not isinstance(slurm.get("cluster"), str):
        raise UpstreamUnavailable(f"GET {path}: meta.slurm.cluster is missing", source=_SOURCE)
    try:
        jobs = read_jobs(data)
    except UnreadableJobs as error:
        raise UpstreamUnavailable(f"GET {path}: {error}", source=_SOURCE) from None
    warnings = data.get("warnings")
    return slurm, jobs, list(warnings) if isinstance(warnings, list) else []


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


async def usage(request: web.Request) -> web.StreamResponse:
    """TRES usage and job counts per group over the query's window (through the cache)."""
    _check_accept(request)
    now = int(time.time())
    try:
        query = read_query(list(request.rel_url.query.items()), now)
    except QueryRefused as error:
        raise BadRequest(f"GET /slurmgate/v1/usage: {error.why}", source=error.where) from None
    allowed = _restriction(request[IDENTITY], query)
    return await read_through(request, partial(_report, request, query, allowed, now))


async def _report(
    request: web.Request, query: UsageQuery, allowed: Callable[[str], bool], now: int
) -> Answer:
    """The report's answer, from slurmdbd's job records read as the caller."""
    identity = request[IDENTITY]
    served = request.app[UPSTREAM_VERSIONS].served
    if not served:
        raise UpstreamUnavailable("slurmrestd serves no API version slurmgate knows")
    version = served[-1]  # oldest first; 24.11's v0.0.40/41 refuse epoch times
    # Nothing can have run after now: a window reaching into the future is fetched up to now.
    fetched = slices(query.start, min(query.end, now + 1)) if query.start <= now else []
    limit = asyncio.Semaphore(MAX_SLICES_AT_ONCE)

    async def fetch(start: int, end: int) -> tuple[Json, list[Job], list[object], int]:
        target = _target(version, query, start, end)
        async with limit:
            answer = await send_as(
                request.app,
                "GET",
                target,
                user=identity.user,
                headers=(("Accept", "application/json"),),
                purpose="usage",
            )
        slurm, jobs, warnings = await asyncio.to_thread(_read_slice, answer, target)
        return slurm, jobs, warnings, answer.status

    started = time.perf_counter()
    try:
        parts = await asyncio.gather(*(fetch(start, end) for start, end in fetched))
    finally:
        request[UPSTREAM_SECONDS] = time.perf_counter() - started
    if parts:
        request[UPSTREAM_STATUS] = max(part[3] for part in parts)
    clusters = sorted({part[0]["cluster"] for part in parts})
    if len(clusters) > 1:
        raise UpstreamUnavailable(f"slurmrestd answered for clusters {', '.join(clusters)}")
    cluster = clusters[0] if clusters else None
    jobs = [job for part in parts for job in part[1]]
    result = await asyncio.to_thread(
        summarize, jobs, query, now=now, cluster=cluster or "", allowed=allowed
    )
    warnings: list[object] = []
    for part in parts:
        warnings += [warning for warning in part[2] if warning not in warnings]
    body: Json = {
        "window": {
            "start": _iso(query.start),
            "end": _iso(query.end),
            "start_time": query.start,
            "end_time": query.end,
        },
        "group_by": list(query.group_by),
        "accounts": list(query.accounts),
        "users": list(query.users),
        "cluster": cluster,
        "computed_at": now,
        **result.as_json(query.group_by),
        "meta": {
            "plugin": _PLUGIN,
            "command": [],
            "slurm": parts[0][0] if parts else {},
            "slurmgate": {
                "api_version": version,
                "sources": [f"/slurmdb/{version}/jobs"],
                "upstream_calls": len(fetched),
            },
        },
        "errors": [],
        "warnings": warnings,
    }
    log.debug("usage %s..%s for %s: %d slices", query.start, query.end, identity.user, len(parts))
    return json_answer(encode_json(body))
