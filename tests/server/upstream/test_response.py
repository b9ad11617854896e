"""The strict response parser every transport reads slurmrestd's answers with."""

from __future__ import annotations

import asyncio

import pytest

from slurmgate.server.upstream.response import (
    MAX_HEAD_BYTES,
    NoAnswer,
    ProtocolError,
    Received,
    TooLarge,
    parse_response,
    read_response,
)

LIMIT = 1 << 20


async def parse(data: bytes, *, head_request: bool = False) -> Received:
    return await parse_response(data, head_request=head_request, max_bytes=LIMIT)


async def test_content_length_body() -> None:
    received = await parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nbody"
    )
    assert received.response.status == 200
    assert received.response.reason == "OK"
    assert received.response.headers == (("Content-Length", "4"), ("Content-Type", "text/plain"))
    assert received.response.body == b"body"
    assert received.keep_alive


async def test_reads_one_answer_and_nothing_after_it() -> None:
    # What slurmrestd 26.05 sends for an error: the answer, then a second one.
    first = b"HTTP/1.1 404 NOT FOUND\r\nConnection: Close\r\nContent-Length: 2\r\n\r\n{}"
    second = b"HTTP/1.1 404 NOT FOUND\r\nConnection: Close\r\nContent-Length: 3\r\n\r\nbad"
    reader = asyncio.StreamReader()
    reader.feed_data(first + b"Connection: Close\r\n" + second)
    received = await read_response(reader, head_request=False, max_bytes=LIMIT)
    assert (received.response.status, received.response.body) == (404, b"{}")
    assert not received.keep_alive
    assert await reader.read(19) == b"Connection: Close\r\n"  # left unread for the caller


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\n\r\n", False),  # delimited by EOF
        # slurmrestd 26.05.5 may follow any error answer with a second response
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", False),
        (
            b"HTTP/1.1 500 Internal Error\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            False,
        ),
        (b"HTTP/1.1 399 Odd\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
async def test_whether_the_connection_may_be_reused(head: bytes, keep_alive: bool) -> None:
    assert (await parse(head)).keep_alive is keep_alive


async def test_header_bytes_and_order_are_kept() -> None:
    received = await parse(
        b"HTTP/1.0 299 Odd \xe9 Reason\r\nX-B: 1\r\nx-b:  2 \r\nX-Latin: caf\xe9\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert received.response.status == 299
    assert received.response.reason == "Odd \xe9 Reason"
    assert received.response.headers == (
        ("X-B", "1"),
        ("x-b", "2"),
        ("X-Latin", "caf\xe9"),
        ("Content-Length", "0"),
    )
    assert received.response.headers[2][1].encode("latin-1") == b"caf\xe9"


async def test_chunked() -> None:
    received = await parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nabcd\r\n1\r\n\xff\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    assert received.response.body == b"abcd\xff"
    assert received.response.header("transfer-encoding") == "chunked"
    assert received.keep_alive


async def test_body_to_eof_without_framing() -> None:
    received = await parse(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert received.response.body == b"all of it"


async def test_head_and_204_have_no_body() -> None:
    head = await parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_request=True)
    assert head.response.body == b""
    empty = await parse(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert empty.response.body == b""


async def test_status_without_reason() -> None:
    received = await parse(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
    assert (received.response.status, received.response.reason) == (200, "")


async def test_nothing_at_all_is_no_answer() -> None:
    with pytest.raises(NoAnswer):
        await parse(b"")


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 2000,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 + b"\r\n"
        b"400\r\n",
    ],
)
async def test_body_over_the_limit(data: bytes) -> None:
    with pytest.raises(TooLarge, match=r"larger than upstream\.max_response_bytes \(1500 bytes\)"):
        await parse_response(data, head_request=False, max_bytes=1500)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"garbage without end", "not an HTTP/1.x status line"),
        (b"slurmrestd: fatal: no config\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\n", "ended inside the header section"),
        (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "ended inside the header section"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "interim response"),
        (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", "body cut short: 3 of 5 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "invalid"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab", "cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", "cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX\r\n\r\n", "malformed"),
    ],
)
async def test_refuses_what_is_not_well_formed(data: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as caught:
        await parse(data)
    assert type(caught.value) is ProtocolError


async def test_refuses_an_endless_header_section() -> None:
    data = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_HEAD_BYTES // 6 + 1)
    with pytest.raises(ProtocolError, match="header section longer"):
        await parse(data)


async def test_refuses_endless_garbage() -> None:
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x status line"):
        await parse(b"x" * (MAX_HEAD_BYTES * 2))
