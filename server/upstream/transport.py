"""What every upstream transport takes and returns: a request's parts, the answer's exact bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["SECRET_HEADERS", "Transport", "UpstreamRequest", "UpstreamResponse"]

#: Headers whose values a repr never shows (lower case): X-SLURM-USER-TOKEN carries the SlurmUser
#: token, with which anyone can act as any user.
SECRET_HEADERS = frozenset({"x-slurm-user-token", "authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True, slots=True, repr=False)
class UpstreamRequest:
    """A request as it goes to slurmrestd: headers already filtered and set by the gateway.

    Its repr (and so str, and any log or traceback showing it) hides the values of
    :data:`SECRET_HEADERS` and shows only the body's length.
    """

    method: str
    #: path and query exactly as sent on the request line, e.g. "/slurm/v0.0.45/jobs/?flags=DETAIL"
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def __repr__(self) -> str:
        headers = tuple(
            (name, "<redacted>" if name.lower() in SECRET_HEADERS else value)
            for name, value in self.headers
        )
        return (
            f"UpstreamRequest(method={self.method!r}, target={self.target!r}, "
            f"headers={headers!r}, body=<{len(self.body)} bytes>)"
        )


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
