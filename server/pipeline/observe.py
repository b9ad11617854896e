"""The outermost step: a request id, the request metrics and one access-log line per answer.

The chain (server/pipeline/chain.py) calls :meth:`Observer.begin` before every other step and
:meth:`Observer.end` with the answer as the client gets it, the gateway's own errors in
slurmrestd's envelope included; ``X-Request-ID`` is added to all of them.
What happened inside comes from the request keys the other steps set (``DECISION``,
``CACHE_STATE``, ``UPSTREAM_STATUS``, ``UPSTREAM_SECONDS``, ``IDENTITY``, ``ROUTE``,
``ENDPOINT``): this module imports no other step.

The request id is the client's ``X-Request-ID`` when it is one short safe token
(``[A-Za-z0-9._-]{1,64}``), else a new random one; it is not sent upstream (slurmrestd ignores
it). The log line is an INFO record on ``slurmgate.access`` whose ``access`` attribute holds the
fields (server/ops/logs.py writes them as one JSON object; docs/operations.md lists them). It never
holds a credential, a query string or a raw path of a matched request: operations are named by
their id and path template.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from datetime import UTC, datetime

from aiohttp import web

from slurmgate.server.keys import (
    CACHE_STATE,
    DECISION,
    ENDPOINT,
    IDENTITY,
    METRICS,
    REQUEST_ID,
    ROUTE,
    UPSTREAM_SECONDS,
    UPSTREAM_STATUS,
)

__all__ = ["CLIENT_CLOSED", "MAX_PATH_CHARS", "REQUEST_ID_HEADER", "Observer"]

log = logging.getLogger("slurmgate.access")

REQUEST_ID_HEADER = "X-Request-ID"
#: The status logged and counted when the client went away before its answer (as nginx does).
CLIENT_CLOSED = 499
#: The longest raw path logged for a request that matched no operation.
MAX_PATH_CHARS = 128
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Observer:
    """The observe step (see the module docstring): :meth:`begin` and :meth:`end` each request."""

    __slots__ = ("_numbers", "_prefix")

    def __init__(self) -> None:
        # Generated ids: a random prefix per app (so replicas and restarts do not collide) and a
        # counter; ids are labels, not secrets, and reading the OS random source per request
        # cost 3% of an uncached request.
        self._prefix = secrets.token_hex(4)
        self._numbers = itertools.count(1)

    def begin(self, request: web.Request) -> str:
        """Give ``request`` its id (``request[REQUEST_ID]``), and return it."""
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id is not None:
            given = request.headers.getall(REQUEST_ID_HEADER)
            if len(given) != 1 or not _SAFE_ID.fullmatch(request_id):
                request_id = None
        if request_id is None:
            request_id = f"{self._prefix}-{next(self._numbers):x}"
        request[REQUEST_ID] = request_id
        return request_id

    @staticmethod
    def end(
        request: web.Request,
        request_id: str,
        status: int,
        seconds: float,
        *,
        response: web.StreamResponse | None,
    ) -> None:
        """Count and log the answer (``status``: as sent, or :data:`CLIENT_CLOSED`) of a request
        that took ``seconds``."""
        route = request.get(ROUTE)
        # ENDPOINT is looked up only when needed: a missing key costs a KeyError inside get().
        endpoint = request.get(ENDPOINT) if route is None else None
        if route is not None:
            operation: str | None = route.operation_id
            path = route.path
        elif endpoint is not None:
            operation = endpoint.operation_id
            resource = request.match_info.route.resource
            path = resource.canonical if resource is not None else ""
        else:
            operation, path = None, request.rel_url.raw_path[:MAX_PATH_CHARS]
        decision = request.get(DECISION)
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.request(
                operation=operation or "none",
                method=request.method,
                status=status,
                decision=decision or "none",
                seconds=seconds,
            )
        if not log.isEnabledFor(logging.INFO):
            return
        arrived = time.time() - seconds  # read only for the log line
        identity = request.get(IDENTITY)
        upstream_seconds = request.get(UPSTREAM_SECONDS)
        fields: dict[str, object] = {
            "time": datetime.fromtimestamp(arrived, UTC).isoformat(timespec="milliseconds")[:-6]
            + "Z",
            "request_id": request_id,
            "remote": request.remote,
            "method": request.method[:16],
            "operation": operation,
            "path": path,
            "user": identity.user if identity else None,
            "auth_method": identity.method if identity else None,
            "token_name": identity.name if identity else None,
            "decision": decision,
            "cache": request.get(CACHE_STATE),
            "upstream_status": request.get(UPSTREAM_STATUS),
            "upstream_seconds": None if upstream_seconds is None else round(upstream_seconds, 6),
            "status": status,
            "seconds": round(seconds, 6),
            "bytes": _bytes(response),
        }
        # makeRecord and handle rather than log.info: the same record and filters, without looking
        # up the caller's frame for every request (a third of the cost of a line).
        args = (request_id, fields["method"], operation or path, status, seconds)
        record = log.makeRecord(
            log.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %s %d %.3fs",
            args,
            None,
            extra={"access": fields},
        )
        log.handle(record)


def _bytes(response: web.StreamResponse | None) -> int | None:
    """The body's size: a whole answer's, or what a stream (job events) has sent when it ended."""
    if isinstance(response, web.Response):
        return response.content_length
    if response is not None and response.prepared:
        return response.body_length
    return None
