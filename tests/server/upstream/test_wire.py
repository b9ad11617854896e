"""Requests on the wire: what is refused, and the HTTP/1.1 form the inetd transport writes."""

from __future__ import annotations

import pytest

from slurmgate.server.errors import BadRequest
from slurmgate.server.upstream.transport import UpstreamRequest
from slurmgate.server.upstream.wire import check_request, request_bytes


def test_request_bytes_post() -> None:
    request = UpstreamRequest(
        "POST",
        "/slurm/v0.0.45/job/submit?a=1",
        (("Content-Type", "application/json"), ("X-SLURM-USER-NAME", "alice")),
        b'{"job": {}}',
    )
    assert request_bytes(request, host="localhost", close=True) == (
        b"POST /slurm/v0.0.45/job/submit?a=1 HTTP/1.1\r\n"
        b"Host: localhost\r\n"
        b"Content-Type: application/json\r\n"
        b"X-SLURM-USER-NAME: alice\r\n"
        b"Content-Length: 11\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b'{"job": {}}'
    )


def test_request_bytes_get_has_no_length_and_drops_transport_headers() -> None:
    request = UpstreamRequest(
        "GET",
        "/slurm/v0.0.45/ping/",
        (
            ("Host", "evil.example"),
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive"),
            ("accept", "application/json"),
        ),
    )
    assert request_bytes(request, host="localhost", close=True) == (
        b"GET /slurm/v0.0.45/ping/ HTTP/1.1\r\nHost: localhost\r\n"
        b"accept: application/json\r\nConnection: close\r\n\r\n"
    )


def test_empty_post_carries_a_zero_length() -> None:
    wire = request_bytes(UpstreamRequest("POST", "/x", ()), host="h", close=False)
    assert wire == b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    "request_",
    [
        UpstreamRequest("GE T", "/", ()),
        UpstreamRequest("GET", "/a b", ()),
        UpstreamRequest("GET", "/a\r\nX: y", ()),
        UpstreamRequest("GET", "http://elsewhere/", ()),
        UpstreamRequest("GET", "/a#fragment", ()),
        UpstreamRequest("GET", "/caf\u00e9", ()),
        UpstreamRequest("GET", "/", (("X-A", "1\r\nX-Injected: 2"),)),
        UpstreamRequest("GET", "/", (("X-A", "nul\x00"),)),
        UpstreamRequest("GET", "/", (("X A", "1"),)),
        UpstreamRequest("GET", "/", (("X-A:", "1"),)),
        UpstreamRequest("GET", "/", (("X-A", "\udcff"),)),
    ],
)
def test_check_request_refuses_smuggling(request_: UpstreamRequest) -> None:
    with pytest.raises(BadRequest):
        check_request(request_)


def test_check_request_accepts_ordinary_requests() -> None:
    check_request(
        UpstreamRequest(
            "DELETE",
            "/slurm/v0.0.45/job/12?signal=KILL&flags=a%2Fb;c+d",
            (("X-SLURM-USER-NAME", "alice"), ("X-Note", "caf\u00e9\ttab")),
        )
    )
