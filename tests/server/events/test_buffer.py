"""Event ids, the bounded buffer and what a Last-Event-ID resumes from."""

from __future__ import annotations

import pytest

from slurmgate.server.events.buffer import EventBuffer, Gap
from slurmgate.server.events.changes import Change
from tests.server.events.fakes import record

EPOCH = "0123abcd"


def filled(size: int, count: int) -> EventBuffer:
    buffer = EventBuffer(EPOCH, size)
    for number in range(1, count + 1):
        buffer.append(Change("appeared", None, record(number)), float(number))
    return buffer


def test_ids_are_the_epoch_and_a_counter() -> None:
    buffer = EventBuffer(EPOCH, 4)
    assert buffer.last_id == f"{EPOCH}-0"
    first = buffer.append(Change("appeared", None, record(1)), 1.0)
    second = buffer.append(Change("appeared", None, record(2)), 2.0)
    assert (first.event_id, second.event_id) == (f"{EPOCH}-1", f"{EPOCH}-2")
    assert first.seq < second.seq
    assert buffer.last_id == f"{EPOCH}-2"


def test_since_gives_what_was_missed_in_order() -> None:
    buffer = filled(8, 6)
    missed = buffer.since(f"{EPOCH}-3")
    assert not isinstance(missed, Gap)
    assert [event.seq for event in missed] == [4, 5, 6]
    assert buffer.since(f"{EPOCH}-6") == []
    zero = buffer.since(f"{EPOCH}-0")
    assert not isinstance(zero, Gap)
    assert len(zero) == 6


def test_the_buffer_is_bounded_and_older_ids_resync() -> None:
    buffer = filled(4, 10)
    assert len(buffer) == 4
    kept = buffer.since(f"{EPOCH}-6")  # the oldest kept is 7: nothing lost
    assert not isinstance(kept, Gap)
    assert [event.seq for event in kept] == [7, 8, 9, 10]
    assert buffer.since(f"{EPOCH}-5") == Gap("too_old")
    assert buffer.since(f"{EPOCH}-0") == Gap("too_old")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ffffffff-3", "unknown_stream"),  # another process or replica
        (f"{EPOCH}-11", "unknown_id"),  # in the future
        (f"{EPOCH}-03", "unknown_id"),
        ("3", "unknown_id"),
        ("", "unknown_id"),
        (f"{EPOCH}-1-2", "unknown_id"),
    ],
)
def test_ids_that_are_not_positions_here_resync(value: str, reason: str) -> None:
    assert filled(4, 10).since(value) == Gap(reason)


def test_the_epoch_is_checked() -> None:
    with pytest.raises(ValueError, match="epoch"):
        EventBuffer("xyz", 4)
