"""Reading slurmrestd's answer off a stream: a strict HTTP/1.x response parser, for every transport.

Strict: CRLF line ends, an ``HTTP/1.0`` or ``HTTP/1.1`` status line, token field names, no obs-fold,
no control characters, one consistent framing (Content-Length, chunked, or to EOF), a complete
body, bounded head and body. Anything else is a :class:`ProtocolError`.

It reads exactly one response and nothing after it. That matters: slurmrestd 26.05.5 follows
every error answer (400, 401, 404, 415, 511 seen in the lab; all sent with ``Connection: Close``)
with a second response on the same connection, and 24.11.5 and 26.05.5 write a stray
``Connection: Close`` line after the body when the request said ``Connection: close``. Both are
left unread and the connection is closed: :attr:`Received.keep_alive` is false for any status of
400 or more, whatever ``Connection`` says, and the http transport also closes a connection with
bytes waiting after the answer. No SchedMD bug number is known for either. (aiohttp's client,
whose parsers reject "data after Connection: close", turns each such answer into an error, which
is why the transports do not use it.)
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from slurmgate.server.upstream.transport import UpstreamResponse

__all__ = [
    "MAX_HEAD_BYTES",
    "NoAnswer",
    "ProtocolError",
    "Received",
    "TooLarge",
    "parse_response",
    "read_response",
]

#: Largest status line plus header section accepted (slurmrestd's are a few hundred bytes). A
#: stream read with :func:`read_response` needs a limit of at least this (StreamReader(limit=)).
MAX_HEAD_BYTES = 64 * 1024

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?\r\n")
_READ_CHUNK = 64 * 1024


class ProtocolError(Exception):
    """The bytes are not a well-formed HTTP/1.x response; the message says what is wrong."""


class NoAnswer(ProtocolError):
    """The stream ended before the first byte of an answer (a kept-alive connection gone stale)."""


class TooLarge(ProtocolError):
    """The body is over the limit the caller set."""


@dataclass(frozen=True, slots=True)
class Received:
    """One response, and whether its framing lets the connection carry another request.

    ``keep_alive`` is false for HTTP/1.0, ``Connection: close``, a body delimited by EOF and any
    status of 400 or more. Whoever reuses the connection must also make sure that nothing was
    received after the response (see :mod:`.http_client`).
    """

    response: UpstreamResponse
    keep_alive: bool


async def read_response(
    reader: asyncio.StreamReader, *, head_request: bool, max_bytes: int
) -> Received:
    """Read one response from ``reader``; raise :class:`ProtocolError` unless it is well formed."""
    head = await _read_head(reader)
    first = head.find(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(head, 0, first)
    if status_line is None:
        raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
    status = int(status_line[2])
    if status < 200:
        # Never asked for (no Expect, no Upgrade is sent), so never expected.
        raise ProtocolError(f"unexpected interim response {status}")
    fields = head[first + 2 : -4].split(b"\r\n") if len(head) - 4 > first else []
    headers = _parse_fields(fields)
    codings = [coding.lower() for coding in _values(headers, "transfer-encoding")]
    lengths = _values(headers, "content-length")
    if codings and lengths:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if codings and codings != ["chunked"]:
        raise ProtocolError(f"unsupported Transfer-Encoding {', '.join(codings)!r}")
    if len(set(lengths)) > 1 or not all(n.isascii() and n.isdigit() for n in lengths):
        raise ProtocolError(f"invalid Content-Length {', '.join(lengths)!r}")
    to_eof = False
    if head_request or status in (204, 304):
        body = b""
    elif codings:
        body = await _read_chunked(reader, max_bytes)
    elif lengths:
        body = await _read_length(reader, int(lengths[0]), max_bytes)
    else:
        body, to_eof = await _read_to_eof(reader, max_bytes), True
    connection = {token.lower() for token in _values(headers, "connection")}
    # Never after an error answer, whatever it says: slurmrestd 26.05.5 follows each one with a
    # second response that a next request on the connection would read as its own.
    keep_alive = (
        status_line[1] == b"1" and "close" not in connection and not to_eof and status < 400
    )
    response = UpstreamResponse(
        status=status,
        # Latin-1 maps each byte to one code point: the header bytes survive untouched.
        reason=(status_line[3] or b"").decode("latin-1"),
        headers=headers,
        body=body,
    )
    return Received(response, keep_alive)


async def parse_response(data: bytes, *, head_request: bool, max_bytes: int) -> Received:
    """:func:`read_response` over bytes already read (bytes after the response are ignored)."""
    reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES + 4)
    reader.feed_data(data)
    reader.feed_eof()
    return await read_response(reader, head_request=head_request, max_bytes=max_bytes)


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise NoAnswer("no answer: the stream ended first") from None
        partial = error.partial
    except asyncio.LimitOverrunError:
        partial = b""
        if not reader.at_eof():
            # Whatever it is, the status line is in the first bytes of the buffer.
            partial = await reader.read(MAX_HEAD_BYTES)
        if _STATUS_LINE.match(partial) and b"\r\n" in partial:
            raise ProtocolError(f"header section longer than {MAX_HEAD_BYTES} bytes") from None
    first = partial.find(b"\r\n")
    if first < 0 or not _STATUS_LINE.fullmatch(partial, 0, first):
        raise ProtocolError(f"not an HTTP/1.x status line: {partial[:40]!r}")
    raise ProtocolError("the stream ended inside the header section")


def _parse_fields(lines: list[bytes]) -> tuple[tuple[str, str], ...]:
    fields = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise ProtocolError(f"malformed header line: {line[:40]!r}")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise ProtocolError(f"control characters in header {name.decode('latin-1')!r}")
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
    return tuple(fields)


def _values(headers: tuple[tuple[str, str], ...], name: str) -> list[str]:
    return [
        item.strip() for key, value in headers if key.lower() == name for item in value.split(",")
    ]


async def _read_length(reader: asyncio.StreamReader, length: int, max_bytes: int) -> bytes:
    if length > max_bytes:
        raise TooLarge(f"answer larger than upstream.max_response_bytes ({max_bytes} bytes)")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise ProtocolError(f"body cut short: {len(error.partial)} of {length} bytes") from None


async def _read_to_eof(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    body = bytearray()
    while chunk := await reader.read(_READ_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"answer larger than upstream.max_response_bytes ({max_bytes} bytes)")
    return bytes(body)


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    body = bytearray()
    while True:
        line = await _read_line(reader)
        size = _CHUNK_SIZE.fullmatch(line)
        if size is None:
            raise ProtocolError(f"malformed chunk size line: {line[:40]!r}")
        length = int(size[1], 16)
        if length == 0:
            break
        if len(body) + length > max_bytes:
            raise TooLarge(f"answer larger than upstream.max_response_bytes ({max_bytes} bytes)")
        chunk = await _read_exactly(reader, length + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        body += chunk[:-2]
    # Trailer fields: checked for form and dropped, nothing downstream uses them.
    while (line := await _read_line(reader)) != b"\r\n":
        _parse_fields([line[:-2]])
    return bytes(body)


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError:
        raise ProtocolError("chunked body cut short") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError("chunk size or trailer line too long") from None


async def _read_exactly(reader: asyncio.StreamReader, length: int) -> bytes:
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("chunked body cut short") from None
