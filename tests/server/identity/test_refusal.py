"""RefusalLog: one line per description and interval, and a count of what was left out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from slurmgate.server.identity.refusal import RefusalLog

log = logging.getLogger("slurmgate.test.refusals")


class Until(logging.Handler):
    """Sets ``seen`` when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def summary() -> Iterator[Until]:
    handler = Until("not logged one by one")
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]


async def test_one_line_per_description_then_the_count(
    caplog: pytest.LogCaptureFixture, summary: Until
) -> None:
    refusals = RefusalLog(log, interval=0.2)
    with caplog.at_level(logging.INFO, logger=log.name):
        for n in range(5):
            refusals.log(logging.WARNING, "invalid bearer token", "refused #%d: wrong secret", n)
        refusals.log(logging.WARNING, "bearer token revoked", "refused: token revoked")
        refusals.log(logging.ERROR, "invalid bearer token", "refused: trouble")
        assert lines(caplog) == [
            (logging.WARNING, "refused #0: wrong secret"),
            (logging.WARNING, "refused: token revoked"),
            (logging.ERROR, "refused: trouble"),
        ]
        async with asyncio.timeout(10):
            await summary.seen.wait()
        # The window is closed: the next refusal is logged at once.
        refusals.log(logging.WARNING, "invalid bearer token", "refused #5: wrong secret")
    assert lines(caplog)[3:] == [
        (
            logging.WARNING,
            "4 more refusals within 0.2 s: invalid bearer token (not logged one by one)",
        ),
        (logging.WARNING, "refused #5: wrong secret"),
    ]


async def test_a_closed_window_reports_its_count_before_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A refusal after the interval, before the timer fired, still gets the count first.
    refusals = RefusalLog(log, interval=0.0)
    with caplog.at_level(logging.INFO, logger=log.name):
        refusals.log(logging.WARNING, "d", "first")
        refusals._windows[(logging.WARNING, "d")].until += 3600  # hold the window open
        refusals.log(logging.WARNING, "d", "left out")
        refusals._windows[(logging.WARNING, "d")].until = 0.0  # and close it
        refusals.log(logging.WARNING, "d", "second")
    assert [message for _, message in lines(caplog)] == [
        "first",
        "1 more refusals within 0 s: d (not logged one by one)",
        "second",
    ]
