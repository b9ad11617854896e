"""``GET /hardware/table``, ``/hardware/stats``, ``/hardware/avail``: the cluster's hardware.

Computed from slurmrestd's nodes and partitions, read with the newest API version the upstream
serves and acting as the caller (like any forwarded read, so Slurm's PrivateData applies), by the
pure functions of server/hardware/summary.py. policies/endpoints/hardware.yaml declares them:
the scope ``slurmgate:hardware``, and their cache policy and group (``hardware``), with which the
cache step caches them like slurmrestd's reads; policies/cache.toml makes every change of nodes
or partitions invalidate that group. docs/extending.md shows how they were added, step by step.

Each answer is in slurmrestd's envelope (``meta``, ``errors``, ``warnings``, slurmrestd's warnings
passed on). ``?partition=NAME`` limits the answer to one partition's nodes. Anything else in the
query is a 400, and an Accept that excludes JSON a 406, never stored: so a path has at most one
cache entry per partition, however a client spells its requests. An upstream failure is
a 502 (or 504) in the envelope, which the cache step answers from a stale entry when the client
sends ``Cache-Control: stale-if-error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web

from slurmgate.server.cache.store import Answer
from slurmgate.server.errors import BadRequest, NotAcceptable, NotFound, UpstreamUnavailable
from slurmgate.server.hardware import summary
from slurmgate.server.hardware.nodes import UnreadableAnswer, read_nodes, read_partitions
from slurmgate.server.keys import IDENTITY, UPSTREAM_SECONDS, UPSTREAM_STATUS, UPSTREAM_VERSIONS
from slurmgate.server.pipeline.cache import encode_json, json_answer, read_through
from slurmgate.server.upstream.acting import send_as
from slurmgate.server.upstream.transport import UpstreamResponse

__all__ = ["MAX_PARTITION_CHARS", "avail", "stats", "table"]

log = logging.getLogger("slurmgate.hardware")

#: Longest partition name taken in ``?partition=`` (Slurm's own names are far shorter).
MAX_PARTITION_CHARS = 256
_QUERY_KEYS = ("partition",)
#: Accept values meaning "JSON" (each listed type, parameters aside): the ones the cache step keys
#: as one, so that every answer stored for a path and query is one entry, whatever the Accept.
_JSON_TYPES = frozenset({"", "*/*", "application/*", "application/json"})
_PLUGIN = {
    "type": "slurmgate",
    "name": "slurmgate hardware",
    "data_parser": "",
    "accounting_storage": "",
}

Json = dict[str, Any]
#: what one answer counts -> the answer's data
Compute = Callable[[summary.Selection], Json]


def _check_accept(request: web.Request) -> None:
    """406 unless Accept is absent or means JSON (see ``_JSON_TYPES``)."""
    accept = ",".join(request.headers.getall("Accept", []))
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if not types <= _JSON_TYPES:
        raise NotAcceptable(
            "the hardware endpoints answer application/json only; send Accept: application/json "
            "or none",
            source="Accept",
        )


def _partition_filter(request: web.Request) -> str | None:
    """``?partition=NAME`` checked: one value, no other parameter."""
    query = request.rel_url.query
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {unknown[0]!r}; the hardware endpoints take: "
            f"{', '.join(_QUERY_KEYS)}",
            source=f"query:{unknown[0][:64]}",
        )
    values = query.getall("partition", [])
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest("partition given more than once", source="query:partition")
    value = values[0]
    if not value or len(value) > MAX_PARTITION_CHARS or not value.isprintable():
        raise BadRequest(
            f"partition must be a partition name (1 to {MAX_PARTITION_CHARS} printable characters)",
            source="query:partition",
        )
    return value


def _check(answer: UpstreamResponse, target: str) -> Json:
    """slurmrestd's answer as JSON, or 502 saying what is wrong with it."""
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if answer.status != 200 or not isinstance(data, dict):
        detail = ""
        if isinstance(data, dict):
            detail = "; ".join(_descriptions(data.get("errors")))
        raise UpstreamUnavailable(
            f"slurmrestd answered GET {target} with {answer.status}"
            + (f": {detail}" if detail else ""),
            source="slurmgate hardware",
        )
    errors = _descriptions(data.get("errors"))
    if errors:
        raise UpstreamUnavailable(
            f"slurmrestd reported errors for GET {target}: {'; '.join(errors)}",
            source="slurmgate hardware",
        )
    return data


def _descriptions(errors: object) -> list[str]:
    if not isinstance(errors, list):
        return []
    found = []
    for error in errors:
        if isinstance(error, Mapping):
            text = error.get("description") or error.get("error") or "an error"
            found.append(str(text)[:200])
    return found


def _warnings(*answers: Json) -> list[object]:
    seen: list[object] = []
    for data in answers:
        for warning in data.get("warnings") or []:
            if warning not in seen:
                seen.append(warning)
    return seen


def _body(
    answers: list[UpstreamResponse],
    targets: tuple[str, str],
    version: str,
    partition: str | None,
    compute: Compute,
) -> bytes:
    """The answer's bytes from slurmrestd's two answers.

    Run in a thread: a large cluster's node list takes a while to decode, read and count, and the
    event loop must not wait for it.
    """
    nodes_data, partitions_data = (
        _check(answer, target) for answer, target in zip(answers, targets, strict=True)
    )
    try:
        nodes = read_nodes(nodes_data)
        partitions = read_partitions(partitions_data)
    except UnreadableAnswer as error:
        raise UpstreamUnavailable(
            f"slurmrestd's nodes or partitions cannot be read: {error}",
            source="slurmgate hardware",
        ) from None
    try:
        selection = summary.select(nodes, partitions, partition)
    except summary.UnknownPartition as error:
        raise NotFound(str(error), source="query:partition") from None
    upstream_meta = nodes_data.get("meta")
    slurm = upstream_meta.get("slurm", {}) if isinstance(upstream_meta, dict) else {}
    body: Json = {
        **compute(selection),
        "partition": partition,
        "last_update": nodes_data.get("last_update"),
        "meta": {
            "plugin": _PLUGIN,
            "command": [],
            "slurm": slurm,
            "slurmgate": {"api_version": version, "sources": list(targets)},
        },
        "errors": [],
        "warnings": _warnings(nodes_data, partitions_data),
    }
    return encode_json(body)


async def _answer(request: web.Request, compute: Compute) -> web.StreamResponse:
    """The checked request's answer, through the cache."""
    _check_accept(request)
    partition = _partition_filter(request)
    return await read_through(request, partial(_summary, request, partition, compute))


async def _summary(request: web.Request, partition: str | None, compute: Compute) -> Answer:
    """The summary from slurmrestd's nodes and partitions, read as the caller."""
    served = request.app[UPSTREAM_VERSIONS].served
    if not served:
        raise UpstreamUnavailable("slurmrestd serves no API version slurmgate knows")
    version = served[-1]  # oldest first: the newest one reads every field the summaries use
    targets = (f"/slurm/{version}/nodes", f"/slurm/{version}/partitions")
    user = request[IDENTITY].user
    started = time.perf_counter()
    try:
        answers = await asyncio.gather(
            *(
                send_as(
                    request.app,
                    "GET",
                    target,
                    user=user,
                    headers=(("Accept", "application/json"),),
                    purpose="hardware",
                )
                for target in targets
            )
        )
    finally:
        request[UPSTREAM_SECONDS] = time.perf_counter() - started
    request[UPSTREAM_STATUS] = max(answer.status for answer in answers)
    body = await asyncio.to_thread(_body, answers, targets, version, partition, compute)
    log.debug("hardware %s for %s from %s", request.path, user, version)
    return json_answer(body)


async def table(request: web.Request) -> web.StreamResponse:
    """Node groups with their CPUs, memory, GPUs, features, counts and partitions."""
    return await _answer(request, lambda s: summary.table(s.nodes, s.partitions))


async def stats(request: web.Request) -> web.StreamResponse:
    """Totals of the cluster: nodes, CPUs, memory, GPUs, what is allocated, nodes by state."""
    return await _answer(request, lambda s: {"stats": summary.stats(s.nodes, s.partitions)})


async def avail(request: web.Request) -> web.StreamResponse:
    """What is free now, per node group: available nodes, free CPUs, memory and GPUs."""
    return await _answer(request, lambda s: summary.avail(s.nodes, s.up))
