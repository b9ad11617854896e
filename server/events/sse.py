"""Server-Sent Events framing (the WHATWG HTML standard's ``text/event-stream``), pure.

A frame is ``id:``, ``event:`` and one ``data:`` line, ended by an empty line. Data is always
compact JSON, which never holds a raw newline (json escapes them), so one ``data:`` line is
enough and a client's parser cannot be made to see a field the gateway did not write. Lines that
start with ``:`` are comments, which clients ignore: the heartbeats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["comment", "frame", "retry", "timestamp"]


def frame(event: str, data: Mapping[str, object], *, event_id: str | None = None) -> bytes:
    """One event; without ``event_id`` the client keeps the last id it had."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def comment(text: str) -> bytes:
    """A comment line (clients ignore it): keeps proxies from closing an idle stream."""
    return f": {' '.join(text.splitlines())}\n\n".encode()


def retry(seconds: float) -> bytes:
    """The reconnection delay a client should use, in milliseconds as SSE says."""
    return f"retry: {round(seconds * 1000)}\n\n".encode()


def timestamp(seconds: float) -> str:
    """A UNIX time as ISO 8601 UTC with milliseconds: ``2026-11-21T11:21:26.000Z``."""
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"
