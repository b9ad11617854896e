"""SlurmUserToken: the token handed out is never expired, renewals are single-flight and retried."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from slurmgate.server.errors import UpstreamUnavailable
from slurmgate.server.upstream.token import EXPIRY_MARGIN, SlurmUserToken
from slurmgate.server.upstream.token_sources import Token, TokenError


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class ScriptedSource:
    """A token source that does what the test tells it, and says when it is called."""

    name = "scripted"
    poll_interval: float | None = None

    def __init__(self, clock: Clock | None = None, *, lifespan: float = 600) -> None:
        self.clock = clock or time.time
        self.lifespan = lifespan
        self.user: str | None = "slurm"
        self.calls = 0
        #: fetch() waits for this when set
        self.gate: asyncio.Event | None = None
        #: set when fetch() starts, and when it succeeds
        self.started = asyncio.Event()
        self.succeeded = asyncio.Event()
        #: how many of the next fetches fail
        self.failures_left = 0
        #: set after this many fetches have succeeded
        self.enough = 0
        self.reached = asyncio.Event()
        self.successes = 0

    async def fetch(self) -> Token:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            raise TokenError("scripted: refused")
        now = self.clock()
        self.successes += 1
        if self.successes >= self.enough:
            self.reached.set()
        self.succeeded.set()
        return Token(f"token-{self.calls}", now, now + self.lifespan, self.user)

    async def changed(self) -> bool:
        return False


def manager(source: ScriptedSource, clock: Clock | None = None, **kw: float) -> SlurmUserToken:
    return SlurmUserToken(
        source,
        user="slurm",
        renew_at=kw.get("renew_at", 0.5),
        retry_interval=kw.get("retry_interval", 5.0),
        clock=clock or time.time,
    )


async def test_hundred_concurrent_gets_start_one_renewal() -> None:
    clock = Clock()
    source = ScriptedSource(clock)
    source.gate = asyncio.Event()
    token = manager(source, clock)
    getters = [asyncio.create_task(token.get()) for _ in range(100)]
    # Tasks run in creation order: every getter has joined the renewal before it can start.
    await source.started.wait()
    assert not any(getter.done() for getter in getters)
    source.gate.set()
    assert await asyncio.gather(*getters) == ["token-1"] * 100
    assert source.calls == 1


async def test_a_waiter_giving_up_does_not_stop_the_renewal() -> None:
    clock = Clock()
    source = ScriptedSource(clock)
    source.gate = asyncio.Event()
    token = manager(source, clock)
    impatient = asyncio.create_task(token.get())
    patient = asyncio.create_task(token.get())
    await source.started.wait()
    impatient.cancel()
    source.gate.set()
    assert await patient == "token-1"
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert source.calls == 1


async def test_fresh_token_is_reused_expired_one_renewed_now() -> None:
    clock = Clock()
    source = ScriptedSource(clock, lifespan=600)
    token = manager(source, clock)
    assert await token.get() == "token-1"
    clock.now += 600 - EXPIRY_MARGIN - 1
    assert await token.get() == "token-1"  # past its renewal point, still valid: no wait
    assert source.calls == 1
    clock.now += 1
    assert await token.get() == "token-2"  # within the margin of its expiry: renewed first
    assert source.calls == 2


async def test_properties_for_metrics() -> None:
    clock = Clock()
    token = manager(ScriptedSource(clock, lifespan=600), clock)
    assert (token.expires_at, token.issued_at, token.age) == (None, None, None)
    await token.get()
    clock.now += 30
    assert token.issued_at == clock.now - 30
    assert token.expires_at == clock.now + 570
    assert token.age == 30
    assert token.source == "scripted"
    assert (token.failures, token.last_error) == (0, None)


async def test_no_token_to_be_had_is_502_and_never_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ScriptedSource()
    source.failures_left = 2
    token = manager(source)
    for attempt in (1, 2):
        with pytest.raises(UpstreamUnavailable) as caught:
            await token.get()
        assert caught.value.status == 502
        assert "no valid SlurmUser token" in caught.value.description
        assert "scripted: refused" not in caught.value.description  # details go to the log
        assert (token.failures, token.last_error) == (attempt, "scripted: refused")
    assert await token.get() == "token-3"
    assert (token.failures, token.last_error) == (0, None)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("scripted: refused" in r.getMessage() for r in errors)


async def test_token_for_another_user_is_refused() -> None:
    source = ScriptedSource()
    source.user = "alice"
    with pytest.raises(UpstreamUnavailable):
        await manager(source).get()


async def test_token_without_a_user_is_refused() -> None:
    # A command or file token without sun could be anyone's: never sent as SlurmUser's.
    source = ScriptedSource()
    source.user = None
    token = manager(source)
    with pytest.raises(UpstreamUnavailable):
        await token.get()
    assert token.last_error == (
        "scripted: the token has no 'sun' claim naming its user (slurm_user_token.user is 'slurm')"
    )


async def test_expired_token_from_the_source_is_refused() -> None:
    source = ScriptedSource(lifespan=1)  # within EXPIRY_MARGIN from the start
    token = manager(source)
    with pytest.raises(UpstreamUnavailable):
        await token.get()
    assert token.last_error is not None
    assert "expired" in token.last_error


async def test_failed_renewal_keeps_the_valid_token(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    source = ScriptedSource(clock, lifespan=600)
    token = manager(source, clock)
    await token.get()
    source.failures_left = 1
    with pytest.raises(TokenError):
        await token.renew()
    assert await token.get() == "token-1"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "the current one expires at" in warning.getMessage()


async def test_background_task_renews_before_expiry() -> None:
    source = ScriptedSource(lifespan=EXPIRY_MARGIN + 1.0)
    source.enough = 3
    token = manager(source, renew_at=0.2)
    token.start()
    try:
        async with asyncio.timeout(10):
            await source.reached.wait()
            # Each renewal came at a fifth of the previous token's lifetime, before it expired.
            assert token.expires_at is not None
            assert token.expires_at > time.time()
    finally:
        await token.stop()
    assert source.calls == 3


async def test_background_task_retries_a_failing_source_until_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.upstream")
    source = ScriptedSource()
    source.failures_left = 3
    token = manager(source, retry_interval=0.05)
    token.start()
    try:
        async with asyncio.timeout(10):
            await source.succeeded.wait()
    finally:
        await token.stop()
    assert source.calls == 4
    assert await token.get() == "token-4"
    assert token.failures == 0
    assert "renewed after 3 failures" in caplog.text


async def test_stop_cancels_a_renewal_under_way() -> None:
    source = ScriptedSource()
    source.gate = asyncio.Event()  # never set: the renewal hangs
    token = manager(source)
    token.start()
    await source.started.wait()
    async with asyncio.timeout(5):
        await token.stop()
    source.gate.set()
    assert await token.get() == "token-2"  # the cancelled renewal was not kept


async def test_a_failed_renewal_reaches_every_waiter_and_is_not_kept() -> None:
    clock = Clock()
    source = ScriptedSource(clock)
    source.gate = asyncio.Event()
    source.failures_left = 1
    token = manager(source, clock)
    waiters = [asyncio.create_task(token.renew()) for _ in range(3)]
    await source.started.wait()  # every waiter has joined the one renewal
    source.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert [type(result) for result in results] == [TokenError] * 3
    assert (source.calls, token.failures) == (1, 1)
    assert await token.get() == "token-2"  # the next call renews again
    assert token.failures == 0


async def test_stop_ends_the_waiters_of_a_renewal_under_way() -> None:
    source = ScriptedSource()
    source.gate = asyncio.Event()  # never set while stopping: the renewal hangs
    token = manager(source)
    waiter = asyncio.create_task(token.renew())
    await source.started.wait()
    async with asyncio.timeout(5):
        await token.stop()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert token.failures == 0  # a cancelled renewal is no failure
