"""The SlurmUser token the gateway sends upstream, renewed in the background before it expires.

Sources are in :mod:`slurmgate.server.upstream.token_sources`. The gateway starts even when the
first token cannot be had (a key not yet readable, slurmctld down for ``scontrol token``): the
failure is logged, each request gets 502 until a renewal succeeds, and the background task retries
every ``retry_interval``. Refusing to start would turn a transient upstream problem into an outage
of the gateway's own endpoints (health, metrics) as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from slurmgate.server.cache.flight import SingleFlight
from slurmgate.server.config import SlurmUserTokenSettings
from slurmgate.server.errors import UpstreamUnavailable
from slurmgate.server.keys import SETTINGS, SLURM_USER_TOKEN
from slurmgate.server.upstream.token_sources import (
    Clock,
    Token,
    TokenError,
    TokenSource,
    make_source,
)

__all__ = ["EXPIRY_MARGIN", "SlurmUserToken", "slurm_user_token_ctx"]

log = logging.getLogger("slurmgate.upstream")

#: A token this close to its ``exp`` (seconds) counts as expired: it could expire on the way.
EXPIRY_MARGIN = 2.0
#: the single-flight key of renewals: there is one token, so one renewal at a time
_RENEWAL = "renewal"


class SlurmUserToken:
    """Hands out a SlurmUser token that has not expired, renewing it when needed.

    :meth:`get` returns the current token, or renews first when there is none or it has (nearly)
    expired. Renewals are single-flight: callers arriving while one runs wait for it. The
    background task (:meth:`start`, :meth:`stop`) renews once ``renew_at`` of a token's lifetime
    has passed, retries a failure every ``retry_interval`` and, for a source that can change by
    itself (a file), renews when it changes. A failure is never kept: the next call tries again.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        user: str,
        renew_at: float,
        retry_interval: float,
        clock: Clock = time.time,
    ) -> None:
        self._source = source
        self._user = user
        self._renew_at = renew_at
        self._retry_interval = retry_interval
        self._clock = clock
        #: the token handed out; only a successful renewal (_fetch) replaces it
        self._current: Token | None = None
        #: the renewal under way, under the one key _RENEWAL (stop() cancels it)
        self._renewals: SingleFlight[str, Token] = SingleFlight(
            name="slurmgate SlurmUser token renewal"
        )
        #: when the background task renews next (epoch seconds); every renewal attempt sets it
        self._due = 0.0
        #: set with _due, so that the background task recomputes its wait
        self._rescheduled = asyncio.Event()
        #: the background task; start() sets it, stop() clears it
        self._runner: asyncio.Task[None] | None = None
        #: whether "past its renewal point" was logged for the current token (_store sets it)
        self._warned_stale = False
        #: consecutive failed renewals (for metrics); a success resets it
        self.failures = 0
        #: the last failure's description while failures > 0
        self.last_error: str | None = None

    @classmethod
    def from_settings(
        cls, settings: SlurmUserTokenSettings, *, clock: Clock = time.time
    ) -> SlurmUserToken:
        """A manager for the source ``settings`` describe (not started)."""
        return cls(
            make_source(settings, clock=clock),
            user=settings.user,
            renew_at=settings.renew_at,
            retry_interval=settings.retry_interval,
            clock=clock,
        )

    @property
    def source(self) -> str:
        """The source's name, as the log shows it."""
        return self._source.name

    @property
    def expires_at(self) -> float | None:
        """The current token's expiry (seconds since the epoch), or None without a token."""
        return self._current.expires_at if self._current else None

    @property
    def issued_at(self) -> float | None:
        """When the current token was issued (its ``iat``), or None without a token."""
        return self._current.issued_at if self._current else None

    @property
    def age(self) -> float | None:
        """Seconds since the current token was issued, or None without a token."""
        return self._clock() - self._current.issued_at if self._current else None

    @property
    def expires_in(self) -> float | None:
        """Seconds until the current token expires (negative once it has), or None without one."""
        return self._current.expires_at - self._clock() if self._current else None

    @property
    def valid(self) -> bool:
        """Whether there is a token that :meth:`get` would hand out without renewing first."""
        return self._current is not None and self._usable(self._current)

    async def get(self) -> str:
        """A token that has not expired; :class:`UpstreamUnavailable` (502) when none can be had."""
        token = self._current
        if token is None or not self._usable(token):
            try:
                token = await self.renew()
            except TokenError:
                raise UpstreamUnavailable(
                    "the gateway has no valid SlurmUser token for slurmrestd; its log says why"
                ) from None
        return token.value

    async def renew(self) -> Token:
        """Get a new token now, or join the renewal under way; :class:`TokenError` on failure."""
        token, _ = await self._renewals.do(_RENEWAL, self._fetch)
        return token

    def start(self) -> None:
        """Start the background renewal task."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="slurmgate SlurmUser token")

    async def stop(self) -> None:
        """Stop the background task and any renewal under way."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
        await self._renewals.cancel()
        if runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    def _usable(self, token: Token) -> bool:
        return self._clock() < token.expires_at - EXPIRY_MARGIN

    async def _fetch(self) -> Token:
        try:
            token = await self._source.fetch()
            self._check(token)
        except TokenError as error:
            self._failed(str(error))
            raise
        except Exception as error:
            # A bug in a source must not turn every request into a 500.
            log.exception("SlurmUser token source %s failed unexpectedly", self.source)
            self._failed(f"{self.source}: unexpected {type(error).__name__}")
            raise TokenError(f"{self.source}: unexpected {type(error).__name__}") from error
        self._store(token)
        return token

    def _check(self, token: Token) -> None:
        if token.user is None:
            # A token without sun could be for anyone; never send it in SlurmUser's name.
            raise TokenError(
                f"{self.source}: the token has no 'sun' claim naming its user "
                f"(slurm_user_token.user is {self._user!r})"
            )
        if token.user != self._user:
            raise TokenError(
                f"{self.source}: the token is for {token.user!r}, "
                f"not for slurm_user_token.user {self._user!r}"
            )
        if not self._usable(token):
            raise TokenError(
                f"{self.source}: the token expired at {_when(token.expires_at)} "
                f"(or expires within {EXPIRY_MARGIN:g} s)"
            )

    def _store(self, token: Token) -> None:
        now = self._clock()
        renewed = self._current is None or token.value != self._current.value
        if renewed:
            self._warned_stale = False
        self._current = token
        if self.failures:
            log.info("SlurmUser token renewed after %d failures", self.failures)
        self.failures, self.last_error = 0, None
        due = token.issued_at + self._renew_at * (token.expires_at - token.issued_at)
        if due <= now:
            # A file not rewritten in time: use it while it lasts, look again soon.
            due = now + self._retry_interval
            if not self._warned_stale:
                self._warned_stale = True
                log.warning(
                    "SlurmUser token from %s is past its renewal point; it expires at %s",
                    self.source,
                    _when(token.expires_at),
                )
        elif renewed:
            log.info("SlurmUser token from %s valid until %s", self.source, _when(token.expires_at))
        self._schedule(due)

    def _failed(self, description: str) -> None:
        self.failures += 1
        self.last_error = description
        current = self._current
        if current is not None and self._usable(current):
            log.warning(
                "SlurmUser token renewal failed (%s); the current one expires at %s; retry in %g s",
                description,
                _when(current.expires_at),
                self._retry_interval,
            )
        else:
            log.error(
                "no valid SlurmUser token, requests get 502: %s; retry in %g s",
                description,
                self._retry_interval,
            )
        self._schedule(self._clock() + self._retry_interval)

    def _schedule(self, due: float) -> None:
        self._due = due
        self._rescheduled.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._next_renewal()
            except Exception:
                # Keep renewing whatever happened: a dead task would let the token expire.
                log.exception("SlurmUser token renewal task failed; retrying")
                self._schedule(self._clock() + self._retry_interval)
                await asyncio.sleep(self._retry_interval)

    async def _next_renewal(self) -> None:
        """Wait until a renewal is due (or the source changed), then renew once."""
        poll = self._source.poll_interval
        while True:
            self._rescheduled.clear()
            wait = self._due - self._clock()
            if wait <= 0:
                break
            if await _set_within(self._rescheduled, wait if poll is None else min(wait, poll)):
                continue  # someone renewed meanwhile: wait for the new due time
            if self._clock() >= self._due or await self._source.changed():
                break
        with contextlib.suppress(TokenError):
            await self.renew()


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch))


async def slurm_user_token_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[SLURM_USER_TOKEN]``, first token fetched, renewed until shutdown."""
    token = SlurmUserToken.from_settings(app[SETTINGS].slurm_user_token)
    try:
        await token.renew()
    except TokenError:
        log.error("starting without a SlurmUser token; renewal retries in the background")
    token.start()
    app[SLURM_USER_TOKEN] = token
    try:
        yield
    finally:
        await token.stop()
