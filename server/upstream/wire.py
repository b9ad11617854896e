"""Requests on the wire, for every transport: what may be sent, and its HTTP/1.1 form.

The answer is read by :mod:`slurmgate.server.upstream.response`.
"""

from __future__ import annotations

import re

from slurmgate.server.errors import BadRequest
from slurmgate.server.upstream.transport import UpstreamRequest

__all__ = [
    "IDEMPOTENT_METHODS",
    "TRANSPORT_HEADERS",
    "check_request",
    "forwarded_headers",
    "request_bytes",
    "sends_body",
]

#: Header fields the transport sets itself (Host, framing) or that only make sense on one hop
#: (RFC 9110 section 7.6.1); any of them in an UpstreamRequest are dropped, never forwarded.
TRANSPORT_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Methods a transport may send again when a kept-alive connection turns out closed (RFC 9110
#: section 9.2.2); a POST (a job submission) is never sent twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: Methods whose requests carry a Content-Length even when the body is empty.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Origin form in visible ASCII: a space would end the target, "#" starts a fragment (never sent),
# anything else must arrive percent-encoded.
_TARGET = re.compile(r"/[!\"$-~]*")
# Field values: no control characters but HTAB (CR, LF and NUL would split or end the header),
# no lone surrogates (they have no UTF-8 form).
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\ud7ff\ue000-\U0010ffff]*")


def check_request(request: UpstreamRequest) -> None:
    """Refuse what cannot go on a request line or in a header field: no smuggling through us."""
    if not _TOKEN.fullmatch(request.method):
        raise BadRequest(f"invalid method {request.method!r}")
    if not _TARGET.fullmatch(request.target):
        raise BadRequest("invalid request target: not a path and query of visible ASCII characters")
    for name, value in request.headers:
        if not _TOKEN.fullmatch(name):
            raise BadRequest(f"invalid header name {name!r}")
        if not _VALUE.fullmatch(value):
            raise BadRequest(f"invalid characters in the value of header {name!r}")


def forwarded_headers(request: UpstreamRequest) -> list[tuple[str, str]]:
    """The request's header fields minus :data:`TRANSPORT_HEADERS`, in order."""
    return [(n, v) for n, v in request.headers if n.lower() not in TRANSPORT_HEADERS]


def sends_body(request: UpstreamRequest) -> bool:
    """Whether the request goes out with a Content-Length (a body, or a method that expects one)."""
    return bool(request.body) or request.method in _BODY_METHODS


def request_bytes(request: UpstreamRequest, *, host: str, close: bool) -> bytes:
    """The request in HTTP/1.1 wire form; ``close`` adds ``Connection: close`` (one request only).

    Call :func:`check_request` first. Field values are encoded as UTF-8 (what aiohttp's server
    decoded them from), so non-ASCII values reach slurmrestd as the client sent them.
    """
    lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in forwarded_headers(request)]
    if sends_body(request):
        lines.append(f"Content-Length: {len(request.body)}")
    if close:
        lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8") + request.body
