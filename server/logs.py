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
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["ACCESS_LOGGER", "LOG_FORMAT", "JsonFormatter", "configure_logging"]

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


def configure_logging(level: str, stream: TextIO) -> None:
    """Text lines for every logger, JSON lines for ``slurmgate.access``, all on ``stream``."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=stream, force=True)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.propagate = False
