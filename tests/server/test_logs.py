"""Logging as ``slurmgate serve`` sets it up: text lines, and the access log as JSON lines."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import InvalidURLError

from slurmgate.server.ops.logs import JsonFormatter, UnreadableRequests, configure_logging


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back afterwards."""
    root, access = logging.getLogger(), logging.getLogger("slurmgate.access")
    saved = (root.handlers[:], root.level, access.handlers[:], access.propagate, access.level)
    try:
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        access.handlers[:], access.propagate, access.level = saved[2], saved[3], saved[4]


def test_an_access_record_is_its_fields() -> None:
    record = logging.LogRecord("slurmgate.access", logging.INFO, "f", 1, "x %s", ("y",), None)
    record.access = {"request_id": "r1", "status": 200, "path": 'a"b\nc'}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) == {"request_id": "r1", "status": 200, "path": 'a"b\nc'}


def test_another_record_is_time_level_logger_message_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "slurmgate.access", logging.ERROR, "f", 1, "bad %s", ("x",), exc_info
    )
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "error"
    assert data["logger"] == "slurmgate.access"
    assert data["message"] == "bad x"
    assert data["time"].endswith("Z")
    assert "ValueError: boom" in data["exception"]


@pytest.mark.usefixtures("logging_restored")
def test_serve_writes_text_lines_and_json_access_lines() -> None:
    stream = io.StringIO()
    configure_logging("info", stream)
    logging.getLogger("slurmgate.cache").warning("cache: backend failed (%s)", "refused")
    logging.getLogger("slurmgate.access").info(
        "r1 GET op 200 0.001s", extra={"access": {"request_id": "r1", "status": 200}}
    )
    logging.getLogger("slurmgate.access").debug("not at info", extra={"access": {}})
    text, access = stream.getvalue().splitlines()
    assert text.endswith(" WARNING slurmgate.cache: cache: backend failed (refused)")
    assert json.loads(access) == {"request_id": "r1", "status": 200}


def _aiohttp_record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        "web_protocol.py",
        1,
        "Error handling request from %s",
        ("127.0.0.1",),
        exc_info,
    )


def test_unreadable_requests_are_one_warning_line_at_most_per_interval() -> None:
    now = [100.0]
    unreadable = UnreadableRequests(interval=1.0, clock=lambda: now[0])
    bad = InvalidURLError("Invalid char in url path:\n\n    b'GET /\\xff'")
    first = _aiohttp_record(bad)
    assert unreadable.filter(first)
    assert (first.levelname, first.exc_info) == ("WARNING", None)
    assert first.getMessage() == (
        "unreadable HTTP request from 127.0.0.1 answered 400: Invalid char in url path:"
    )
    assert not unreadable.filter(_aiohttp_record(bad))
    assert not unreadable.filter(_aiohttp_record(bad))
    now[0] += 1.5
    later = _aiohttp_record(bad)
    assert unreadable.filter(later)
    assert later.getMessage().endswith("(2 more left out in 1 s)")
    # A real error of the gateway keeps its level and traceback.
    other = _aiohttp_record(RuntimeError("bug"))
    assert unreadable.filter(other)
    assert other.levelname == "ERROR"
    assert other.exc_info is not None
