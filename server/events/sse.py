"""Server-Sent Events framing (the WHATWG HTML standard's ``text/event-stream``), pure.

A frame is ``id:``, ``event:`` and ``data:`` lines, ended by an empty line. Data is always
compact JSON, which never holds a raw newline (json escapes them), so a client's parser cannot
be made to see a field the gateway did not write. An event is one ``data:`` line; a snapshot puts
each job on a ``data:`` line of its own (``spread``), so that no line grows with the cluster:
clients join a frame's data lines with newlines, as the standard says, and JSON allows newlines
between values, so the joined text is the same JSON. A 10,000-job snapshot on one line was 3 MB,
which clients reading lines with a bound (aiohttp's ``readline`` stops at 512 KiB) cannot read.
Lines that start with ``:`` are comments, which clients ignore: the heartbeats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["comment", "frame", "retry", "timestamp"]


def frame(
    event: str,
    data: Mapping[str, object],
    *,
    event_id: str | None = None,
    spread: str | None = None,
) -> bytes:
    """One event; without ``event_id`` the client keeps the last id it had.

    ``spread``: a key of ``data`` holding a list, whose items each get a ``data:`` line.
    """
    head = f"id: {event_id}\n" if event_id is not None else ""
    lines = "".join(f"data: {line}\n" for line in _json_lines(data, spread))
    return f"{head}event: {event}\n{lines}\n".encode()


def _json_lines(data: Mapping[str, object], spread: str | None) -> list[str]:
    """Compact JSON of ``data`` in lines: one, or one per item of ``data[spread]`` as well."""
    items = data.get(spread) if spread is not None else None
    if not isinstance(items, list) or not items:
        return [_dumps(data)]
    before = _dumps({k: v for k, v in data.items() if k != spread})[:-1]
    comma = "," if len(data) > 1 else ""
    lines = [f"{before}{comma}{_dumps(spread)}:["]
    lines += [f"{_dumps(item)}," for item in items[:-1]]
    lines.append(f"{_dumps(items[-1])}]}}")
    return lines


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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
