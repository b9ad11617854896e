"""Property test: whatever bytes come back from upstream, the response parser returns one response
or raises :class:`ProtocolError` (a 502), never another exception (a 500)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from slurmgate.server.upstream.response import ProtocolError, Received, parse_response

PIECES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 500 Oops\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"HTTP/2 200\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Content-Length: -1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Connection: close\r\n",
        b"X: \x00\r\n",
        b" folded\r\n",
        b"\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"fffffffffffffff\r\n",
        b"0;ext=1\r\nTrailer: x\r\n\r\n",
        b"hello",
        b"\n",
    ]
)
RESPONSES = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(PIECES, st.binary(max_size=8)), max_size=10).map(b"".join),
)


@settings(deadline=None, max_examples=1000)
@given(data=RESPONSES, head=st.booleans())
def test_any_bytes_give_a_response_or_protocol_error(data: bytes, head: bool) -> None:
    async def parse() -> Received | None:
        try:
            return await parse_response(data, head_request=head, max_bytes=1 << 16)
        except ProtocolError:
            return None

    received = asyncio.run(parse())
    if received is not None:
        assert 200 <= received.response.status <= 999
        assert len(received.response.body) <= 1 << 16
