"""The gateway's exception tree, and the one place it becomes an HTTP response.

::

    SlurmgateError                  every error the gateway itself answers with
    ├── ClientError                 4xx: the request is at fault
    │   ├── BadRequest              400  unreadable or ill-formed request
    │   ├── Unauthenticated         401  no identity (adds WWW-Authenticate)
    │   ├── Forbidden               403  an identity without permission
    │   ├── NotFound                404  unknown API version or path
    │   ├── MethodNotAllowed        405  known path, other method (adds Allow)
    │   ├── NotAcceptable           406  an Accept the gateway's own endpoint cannot answer
    │   ├── PayloadTooLarge         413  body over the configured limit
    │   ├── ExpectationFailed       417  an Expect header other than 100-continue
    │   └── TooManyRequests         429  the caller's rate limit (adds Retry-After)
    └── UpstreamError               5xx: slurmrestd could not answer
        ├── UpstreamUnavailable     502  connection refused or broken, bad HTTP
        ├── UpstreamBusy            503  the upstream queue is full or too slow (adds Retry-After)
        └── UpstreamTimeout         504  no answer within the configured time
    GatewayBusy                     503  the gateway's own capacity is used up (adds Retry-After)
    ConfigError                     start-up only: the configuration is wrong (never HTTP)

Bodies use slurmrestd's envelope, so clients that parse slurmrestd's errors parse ours:
``{"meta": {...}, "errors": [{"error", "error_number", "description", "source"}], "warnings": []}``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence

from aiohttp import web

__all__ = [
    "BadRequest",
    "ClientError",
    "ConfigError",
    "ExpectationFailed",
    "Forbidden",
    "GatewayBusy",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "SlurmgateError",
    "TooManyRequests",
    "Unauthenticated",
    "UpstreamBusy",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "answer_error",
    "envelope",
    "retry_seconds",
    "to_response",
]

log = logging.getLogger("slurmgate.access")

#: The ``meta.plugin`` block of the gateway's own answers (slurmrestd puts its plugin there).
PLUGIN = {"type": "slurmgate", "name": "slurmgate", "data_parser": "", "accounting_storage": ""}


class SlurmgateError(Exception):
    """An error the gateway answers itself; ``status`` and ``error`` are fixed per class."""

    status = 500
    error = "Internal gateway error"

    def __init__(
        self,
        description: str,
        *,
        source: str = "slurmgate",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.source = source
        self.headers = dict(headers or {})


class ClientError(SlurmgateError):
    """The request is at fault (4xx)."""

    status = 400
    error = "Bad request"


class BadRequest(ClientError):
    """The request cannot be read: bad JSON, bad header, ill-formed path."""


class Unauthenticated(ClientError):
    """No identity could be established from the request (401)."""

    status = 401
    error = "Authentication failure"

    def __init__(
        self, description: str, *, source: str = "slurmgate", realm: str = "slurmgate"
    ) -> None:
        super().__init__(
            description,
            source=source,
            headers={"WWW-Authenticate": f'Bearer realm="{realm}", MUNGE realm="{realm}"'},
        )


class Forbidden(ClientError):
    """The caller is known but may not do this (403)."""

    status = 403
    error = "Access denied"


class NotFound(ClientError):
    """No such API version or path (404)."""

    status = 404
    error = "Unable to find requested URL endpoint"


class MethodNotAllowed(ClientError):
    """The path exists, the method does not (405)."""

    status = 405
    error = "Method not allowed"

    def __init__(
        self, description: str, *, allowed: Sequence[str], source: str = "slurmgate"
    ) -> None:
        super().__init__(description, source=source, headers={"Allow": ", ".join(allowed)})


class NotAcceptable(ClientError):
    """The gateway's own endpoint answers JSON only, and the request's Accept excludes it (406)."""

    status = 406
    error = "Not acceptable"


class ExpectationFailed(ClientError):
    """An ``Expect`` the gateway cannot meet: anything but ``100-continue`` (417)."""

    status = 417
    error = "Expectation failed"


class PayloadTooLarge(ClientError):
    """The request body is over the configured limit (413)."""

    status = 413
    error = "Request body too large"


class TooManyRequests(ClientError):
    """The caller is over its rate limit (429); ``retry_after`` seconds, rounded up, in a header."""

    status = 429
    error = "Rate limit exceeded"

    def __init__(self, description: str, *, retry_after: float, source: str = "slurmgate") -> None:
        super().__init__(
            description, source=source, headers={"Retry-After": str(retry_seconds(retry_after))}
        )


class UpstreamError(SlurmgateError):
    """slurmrestd could not answer (5xx)."""

    status = 502
    error = "Upstream slurmrestd unavailable"


class UpstreamUnavailable(UpstreamError):
    """Connection refused or broken, or an answer that is not HTTP (502)."""


class UpstreamBusy(UpstreamError):
    """The gateway's cap on calls to slurmrestd: the queue is full or the wait too long (503).

    An :class:`UpstreamError`, so that a cached answer may stand in for it (stale-if-error).
    """

    status = 503
    error = "Upstream slurmrestd busy"

    def __init__(self, description: str, *, retry_after: float, source: str = "slurmgate") -> None:
        super().__init__(
            description, source=source, headers={"Retry-After": str(retry_seconds(retry_after))}
        )


class UpstreamTimeout(UpstreamError):
    """No answer within the configured time (504)."""

    status = 504
    error = "Upstream slurmrestd timed out"


class GatewayBusy(SlurmgateError):
    """The gateway itself has no room (every job event stream it allows is open): 503."""

    status = 503
    error = "Gateway busy"

    def __init__(self, description: str, *, retry_after: float, source: str = "slurmgate") -> None:
        super().__init__(
            description, source=source, headers={"Retry-After": str(retry_seconds(retry_after))}
        )


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` name the file, the key and what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def retry_seconds(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1 (0 would invite a retry
    storm at once)."""
    return max(1, math.ceil(seconds))


def envelope(
    errors: Sequence[Mapping[str, object]], *, warnings: Sequence[Mapping[str, object]] = ()
) -> dict[str, object]:
    """A slurmrestd-shaped body carrying ``errors``."""
    return {
        "meta": {"plugin": PLUGIN, "command": [], "slurm": {}},
        "errors": list(errors),
        "warnings": list(warnings),
    }


def to_response(error: SlurmgateError) -> web.Response:
    """The only mapping from the exception tree to HTTP."""
    body = envelope(
        [
            {
                "error": error.error,
                "error_number": error.status,
                "description": error.description,
                "source": error.source,
            }
        ]
    )
    return web.Response(
        status=error.status,
        body=json.dumps(body, indent=2).encode() + b"\n",
        content_type="application/json",
        headers={"Server": "slurmgate", **error.headers},
    )


def answer_error(request: web.Request, error: Exception, supported: Sequence[str]) -> web.Response:
    """The envelope answering ``error``: ours, aiohttp's routing and size errors, and bugs.

    ``supported`` are the API versions a 404 names. Raises ``error`` again when it is an aiohttp
    answer below 400 (a redirect), which is not an error.
    """
    if isinstance(error, SlurmgateError):
        return to_response(error)
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        return to_response(_from_aiohttp(request, error, supported))
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=error)
    return to_response(SlurmgateError("the gateway failed; the error is in its log"))


def _from_aiohttp(
    request: web.Request, error: web.HTTPException, versions: Sequence[str]
) -> SlurmgateError:
    """aiohttp's own HTTP errors (no route, wrong method, body too large...) in our tree."""
    if isinstance(error, web.HTTPNotFound):
        return NotFound(
            f"no slurmrestd operation at {request.path}; API versions served here: "
            f"{', '.join(versions) or 'none'} (GET /meta/versions lists them)",
            source="slurmgate routing",
        )
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = sorted(error.allowed_methods)
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
            allowed=allowed,
            source="slurmgate routing",
        )
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(error.text or "request body too large")
    return _Passthrough(error.status, error.reason, error.text or "")


class _Passthrough(SlurmgateError):
    """Another HTTP error aiohttp raised (e.g. 400 for a bad request line), in the envelope."""

    def __init__(self, status: int, reason: str, text: str) -> None:
        super().__init__(text or reason)
        self.status = status
        self.error = reason
