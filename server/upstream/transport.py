"""What every upstream transport takes and returns: a request's parts, the answer's exact bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Transport", "UpstreamRequest", "UpstreamResponse"]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """A request as it goes to slurmrestd: headers already filtered and set by the gateway."""

    method: str
    #: path and query exactly as sent on the request line, e.g. "/slurm/v0.0.45/jobs/?flags=DETAIL"
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """slurmrestd's answer, untouched: status, headers in order, body bytes."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


class Transport(Protocol):
    """Sends one request to slurmrestd.

    Raises :class:`slurmgate.server.errors.UpstreamUnavailable` when slurmrestd cannot be reached
    or answers something that is not HTTP, :class:`~slurmgate.server.errors.UpstreamTimeout` when
    the answer does not come within the configured time.
    """

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request`` and return the whole answer."""
        ...

    async def close(self) -> None:
        """Release connections and processes."""
        ...
