"""Logging as ``slurmgate serve`` sets it up: text lines on stderr, the access log as JSON lines.

The access log (logger ``slurmgate.access``) gets its own handler and does not propagate, so each
of its records is exactly one JSON object on one line, whatever else is logged around it: the
fields the observe step put in the record's ``access`` attribute, or for its other records (an
unhandled error) time, level, logger, message and traceback. The standard library is enough for
this; a JSON logging library would add a dependency for a dozen lines.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from aiohttp.http_exceptions import HttpProcessingError

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMAT",
    "JsonFormatter",
    "UnreadableRequests",
    "configure_logging",
]

ACCESS_LOGGER = "slurmgate.access"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines and control characters escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's ``access`` fields, or time, level, logger and message."""
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            return json.dumps(fields, separators=(",", ":"))
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[
                :-6
            ]
            + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, separators=(",", ":"))


class UnreadableRequests(logging.Filter):
    """aiohttp's records of requests it cannot parse, as one short WARNING at most per ``interval``.

    aiohttp answers such a request (a bad request line, a bad chunk, a non-UTF-8 path) with 400
    itself, and logs it as ``ERROR ... Error handling request`` with a traceback: anyone could
    fill the log with tracebacks for free, as with refused credentials (identity/refusal.py).
    Records of any other error pass unchanged.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        #: when the next line may be written; lines left out until then (guarded by the GIL:
        #: logging calls it under the handler's lock, and the gateway logs from one thread)
        self._next = 0.0
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """False to drop the record; True to keep it (rewritten if it is an unreadable request)."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._next:
            self._left_out += 1
            return False
        self._next = now + self._interval
        left_out, self._left_out = self._left_out, 0
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = (str(error.message).strip().splitlines() or [""])[0][:200]
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "unreadable HTTP request from %s answered 400: %s%s"
        more = f" ({left_out} more left out in {self._interval:g} s)" if left_out else ""
        record.args = (remote, reason, more)
        record.exc_info, record.exc_text = None, None
        return True


def configure_logging(level: str, stream: TextIO) -> None:
    """Text lines for every logger, JSON lines for ``slurmgate.access``, all on ``stream``."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=stream, force=True)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, UnreadableRequests) for f in server.filters):
        server.addFilter(UnreadableRequests())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.propagate = False
