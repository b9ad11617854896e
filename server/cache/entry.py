"""What the cache stores for one answer, and its byte form for a shared backend.

The byte form is a plain envelope, never pickle: a magic line naming the format version, a JSON
header (times, generation, status, headers) and then the upstream's body bytes untouched. A
value that does not decode is treated as absent, so a format change or a stray key cannot break
a request.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from multidict import CIMultiDict

from slurmgate.server.cache.bodyfile import BodyFile

__all__ = ["FORMAT", "Entry", "decode", "encode"]

#: Format version; part of every key, so gateways of different formats never read each other's.
FORMAT = "1"
_MAGIC = b"SGC" + FORMAT.encode() + b"\n"
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored answer of slurmrestd with the times that decide whether it may be reused."""

    #: the key material it answers (for people reading a Redis dump; never trusted for lookup)
    what: str
    #: the generation of its cache group when the upstream request was made
    generation: str
    #: wall-clock time (Unix seconds) when the upstream request was made
    generated_at: float
    #: seconds slurmrestd took to answer
    upstream_seconds: float
    #: wall-clock time after which it is stale
    stale_at: float
    status: int
    reason: str
    #: the answer's headers as the gateway passes them on (no hop-by-hop headers)
    headers: tuple[tuple[str, str], ...]
    #: the upstream's bytes; for a large entry in memory, a read-only view of :attr:`file`
    body: bytes | memoryview
    #: the memory file holding the body, when the memory backend made one (sent by sendfile)
    file: BodyFile | None = field(default=None, compare=False, repr=False)
    #: the response headers made once for this entry, per X-Cache outcome and privacy, all but
    #: ``Age`` (server/pipeline/respond.py); in this process only, never encoded
    headers_made: dict[tuple[str, bool], CIMultiDict[str]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def lifetime(self) -> float:
        """Seconds it is fresh for, from its generation."""
        return self.stale_at - self.generated_at

    def age(self, now: float) -> float:
        """Seconds since it was generated (never negative, whatever the clocks did)."""
        return max(0.0, now - self.generated_at)

    @property
    def size(self) -> int:
        """Approximate bytes it takes, for the memory budget."""
        return len(self.body) + len(self.what) + sum(len(k) + len(v) for k, v in self.headers) + 200


def encode(entry: Entry) -> bytes:
    """The entry's byte form (see the module docstring)."""
    head = json.dumps(
        {
            "what": entry.what,
            "generation": entry.generation,
            "generated_at": entry.generated_at,
            "upstream_seconds": entry.upstream_seconds,
            "stale_at": entry.stale_at,
            "status": entry.status,
            "reason": entry.reason,
            "headers": [list(pair) for pair in entry.headers],
        },
        separators=(",", ":"),
    ).encode()
    return b"".join((_MAGIC, _LENGTH.pack(len(head)), head, entry.body))


def decode(data: bytes) -> Entry:
    """The entry in ``data``; raises ValueError when it is not one in this format."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a cache entry of format " + FORMAT)
    start = len(_MAGIC) + _LENGTH.size
    if len(data) < start:
        raise ValueError("truncated cache entry")
    (length,) = _LENGTH.unpack_from(data, len(_MAGIC))
    if len(data) < start + length:
        raise ValueError("truncated cache entry")
    try:
        head = json.loads(data[start : start + length])
        headers = tuple((str(k), str(v)) for k, v in head["headers"])
        entry = Entry(
            what=str(head["what"]),
            generation=str(head["generation"]),
            generated_at=float(head["generated_at"]),
            upstream_seconds=float(head["upstream_seconds"]),
            stale_at=float(head["stale_at"]),
            status=int(head["status"]),
            reason=str(head["reason"]),
            headers=headers,
            body=data[start + length :],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"unreadable cache entry header: {error}") from None
    return entry
