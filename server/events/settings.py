"""The ``[events]`` section of the settings: the job event stream's poller and its bounds."""

from __future__ import annotations

from pydantic import Field, model_validator

from slurmgate.server.config_types import Section

__all__ = ["EventsSettings"]


class EventsSettings(Section):
    """``GET /slurmgate/v1/events/jobs`` (docs/events.md)."""

    #: seconds between polls right after a change (the fastest the poller goes)
    min_interval: float = Field(1.0, ge=0.1, le=3600)
    #: seconds between polls after a quiet spell (doubling from min_interval while nothing changes)
    max_interval: float = Field(5.0, ge=0.1, le=3600)
    #: the interval is at least this many times what the last poll took (a slow slurmctld is
    #: asked less often)
    load_factor: float = Field(10.0, ge=1, le=1000)
    #: events kept for clients reconnecting with Last-Event-ID; older ones get a resync
    buffer: int = Field(4096, ge=16, le=1 << 20)
    #: events waiting to be sent to one subscriber; beyond, it is disconnected (slow_consumer)
    queue: int = Field(256, ge=1, le=1 << 16)
    #: streams open at once on this gateway
    max_subscribers: int = Field(1000, ge=1, le=100_000)
    #: streams open at once per caller (token, MUNGE user)
    max_subscribers_per_caller: int = Field(16, ge=1, le=100_000)
    #: seconds without an event before a heartbeat comment is sent
    heartbeat: float = Field(15.0, ge=0.1, le=3600)
    #: seconds a write to one client may block; then it is disconnected
    write_timeout: float = Field(30.0, gt=0, le=3600)
    #: seconds a stream lasts at most; it then ends (reason max_duration), and the client
    #: reconnects with Last-Event-ID, so its credentials are checked again
    max_duration: float = Field(3600.0, ge=1, le=86400 * 7)
    #: seconds clients are told to wait before reconnecting (SSE retry)
    retry: float = Field(3.0, ge=0, le=3600)
    #: only the caller's own jobs (Slurm's PrivateData=jobs); None: as cache.per_user
    per_user: bool | None = None

    @model_validator(mode="after")
    def _ordered(self) -> EventsSettings:
        if self.max_interval < self.min_interval:
            raise ValueError("'max_interval' must be at least 'min_interval'")
        return self
