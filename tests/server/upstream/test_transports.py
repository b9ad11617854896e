"""What every transport must do, against tiny fake upstreams: pass bytes through untouched."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from slurmgate.server.errors import BadRequest, UpstreamUnavailable
from slurmgate.server.upstream.transport import UpstreamRequest, UpstreamResponse
from tests.server.upstream.fakes import KINDS, Kind, serving, split_request

GZIPPED = gzip.compress(b'{"pings": [], "errors": []}', mtime=0)
BINARY = bytes(range(256)) * 4

ANSWERS = {
    "gzip": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"X-Repeat: one\r\nx-repeat: two\r\nSet-Cookie: session=abc; Path=/\r\n"
        b"Content-Length: %d\r\n\r\n" % len(GZIPPED) + GZIPPED,
        UpstreamResponse(
            200,
            "OK",
            (
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
                ("X-Repeat", "one"),
                ("x-repeat", "two"),
                ("Set-Cookie", "session=abc; Path=/"),
                ("Content-Length", str(len(GZIPPED))),
            ),
            GZIPPED,
        ),
    ),
    "binary-500": (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/octet-stream\r\n"
        b"X-Latin: caf\xe9\r\nContent-Length: 1024\r\n\r\n" + BINARY,
        UpstreamResponse(
            500,
            "Internal Server Error",
            (
                ("Content-Type", "application/octet-stream"),
                ("X-Latin", "caf\xe9"),
                ("Content-Length", "1024"),
            ),
            BINARY,
        ),
    ),
    "chunked": (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n5\r\ncaf\xe9!\r\n3\r\n\x00\xff\n\r\n0\r\n\r\n",
        UpstreamResponse(
            404,
            "Not Found",
            (("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")),
            b"caf\xe9!\x00\xff\n",
        ),
    ),
}

TARGET = "/slurm/v0.0.45/a%2Fb;c=d/./x?x=1+2&x=3&y=%2F&x=&z=%e9;w"
POST = UpstreamRequest(
    "POST",
    TARGET,
    (
        ("Content-Type", "application/json"),
        ("X-SLURM-USER-NAME", "alice"),
        ("X-SLURM-USER-TOKEN", "not-a-real-token"),
        ("Host", "client.example"),
        ("Connection", "upgrade"),
    ),
    b'{"job": {"name": "\xc3\xa9"}}',
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("answer", sorted(ANSWERS))
async def test_answer_passes_through_untouched(kind: Kind, answer: str, workdir: Path) -> None:
    raw, expected = ANSWERS[answer]
    async with serving(kind, workdir, answer=raw) as served:
        assert await served.transport.send(POST) == expected


@pytest.mark.parametrize("kind", KINDS)
async def test_request_arrives_byte_identical(kind: Kind, workdir: Path) -> None:
    async with serving(kind, workdir, answer=ANSWERS["gzip"][0]) as served:
        await served.transport.send(POST)
        [raw] = served.requests()
    line, fields, body = split_request(raw)
    assert line == f"POST {TARGET} HTTP/1.1".encode()
    assert body == POST.body
    host = {"http": fields[0], "unix": b"Host: localhost", "inetd": b"Host: localhost"}[kind]
    assert fields[0].startswith(b"Host: ")
    expected = [
        host,
        b"Content-Type: application/json",
        b"X-SLURM-USER-NAME: alice",
        b"X-SLURM-USER-TOKEN: not-a-real-token",
        b"Content-Length: %d" % len(POST.body),
    ]
    if kind == "inetd":
        expected.append(b"Connection: close")
    assert fields == expected


@pytest.mark.parametrize("kind", KINDS)
async def test_get_sends_no_body_and_no_length(kind: Kind, workdir: Path) -> None:
    get = UpstreamRequest("GET", "/slurm/v0.0.45/ping/", (("Accept", "*/*"),))
    async with serving(kind, workdir, answer=ANSWERS["gzip"][0]) as served:
        await served.transport.send(get)
        [raw] = served.requests()
    line, fields, body = split_request(raw)
    assert line == b"GET /slurm/v0.0.45/ping/ HTTP/1.1"
    names = [field.split(b":")[0].lower() for field in fields]
    assert names == [b"host", b"accept"] + ([b"connection"] if kind == "inetd" else [])
    assert body == b""


@pytest.mark.parametrize("kind", KINDS)
async def test_repeated_header_fields_all_arrive_in_order(kind: Kind, workdir: Path) -> None:
    request = UpstreamRequest("GET", "/", (("X-Repeat", "1"), ("x-repeat", "2"), ("X-B", "3")))
    async with serving(kind, workdir, answer=ANSWERS["gzip"][0]) as served:
        await served.transport.send(request)
        [raw] = served.requests()
    _, fields, _ = split_request(raw)
    values = [(f.split(b":")[0].lower(), f.split(b": ")[1]) for f in fields[1:]]
    assert values[:3] == [(b"x-repeat", b"1"), (b"x-repeat", b"2"), (b"x-b", b"3")]


@pytest.mark.parametrize("kind", KINDS)
async def test_smuggling_attempt_is_refused_before_sending(kind: Kind, workdir: Path) -> None:
    request = UpstreamRequest("GET", "/", (("X-A", "1\r\nX-SLURM-USER-NAME: root"),))
    async with serving(kind, workdir, answer=ANSWERS["gzip"][0]) as served:
        with pytest.raises(BadRequest):
            await served.transport.send(request)
        assert served.requests() == []


@pytest.mark.parametrize("kind", KINDS)
async def test_answer_over_the_size_cap_is_502(kind: Kind, workdir: Path) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200_000
    async with serving(kind, workdir, answer=big, max_response_bytes=100_000) as served:
        with pytest.raises(UpstreamUnavailable, match=r"larger than upstream\.max_response_bytes"):
            await served.transport.send(UpstreamRequest("GET", "/", ()))
