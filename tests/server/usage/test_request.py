"""The query of GET /usage: times, names, group_by, the window's bounds, and slicing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slurmgate.server.usage.request import (
    MAX_WINDOW_SECONDS,
    SLICE_SECONDS,
    QueryRefused,
    read_query,
    slices,
)

NOW = int(datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp())
TEN = int(datetime(2026, 11, 21, 10, 0, tzinfo=UTC).timestamp())


def refused(pairs: list[tuple[str, str]]) -> QueryRefused:
    with pytest.raises(QueryRefused) as caught:
        read_query(pairs, NOW)
    return caught.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T10:00:00Z", TEN),
        ("2026-11-21T11:00:00+01:00", TEN),
        ("2026-11-21T05:30:00-04:30", TEN),
        ("2026-11-21T10:00Z", TEN),
        (str(TEN), TEN),
        ("2026-11-21", TEN - 10 * 3600),
        ("now", NOW),
    ],
)
def test_times_in_every_accepted_spelling(text: str, expected: int) -> None:
    query = read_query([("start", text), ("end", str(NOW + 60))], NOW)
    assert query.start == expected


def test_end_defaults_to_now_and_group_by_to_account() -> None:
    query = read_query([("start", str(TEN))], NOW)
    assert (query.start, query.end) == (TEN, NOW)
    assert query.group_by == ("account",)
    assert (query.accounts, query.users) == ((), ())


@pytest.mark.parametrize(
    ("grouping", "fields"),
    [("account", ("account",)), ("user", ("user",)), ("account,user", ("account", "user"))],
)
def test_group_by(grouping: str, fields: tuple[str, ...]) -> None:
    assert read_query([("start", str(TEN)), ("group_by", grouping)], NOW).group_by == fields


def test_names_are_split_sorted_and_accounts_lowercased() -> None:
    query = read_query(
        [("start", str(TEN)), ("account", "Physics,chem,physics"), ("user", "carol,alice")], NOW
    )
    assert query.accounts == ("chem", "physics")
    assert query.users == ("alice", "carol")


@pytest.mark.parametrize(
    ("pairs", "where", "says"),
    [
        ([("end", "now")], "query:start", "required"),
        ([("start", "yesterday")], "query:start", "is not a time"),
        ([("start", "2026-13-01T00:00:00Z")], "query:start", "is not a time"),
        ([("start", "2026-11-21T10:00:00")], "query:start", "no time zone"),
        ([("start", "x" * 500)], "query:start", "is not a time"),
        ([("start", str(TEN)), ("end", "2026-11-21T09:00:00Z")], "query:end", "before"),
        ([("start", str(TEN)), ("end", str(TEN))], "query:end", "at or before"),
        ([("start", "0"), ("end", str(MAX_WINDOW_SECONDS + 1))], "query:end", "366 days"),
        ([("start", str(TEN)), ("group_by", "partition")], "query:group_by", "one of"),
        ([("start", str(TEN)), ("group_by", "user,account")], "query:group_by", "one of"),
        ([("start", str(TEN)), ("acount", "chem")], "query:acount", "unknown parameter"),
        ([("start", str(TEN)), ("start", str(TEN))], "query:start", "more than once"),
        ([("start", str(TEN)), ("account", "chem,")], "query:account", "not a Slurm"),
        ([("start", str(TEN)), ("account", "ch em")], "query:account", "not a Slurm"),
        ([("start", str(TEN)), ("user", "al/ice")], "query:user", "not a Slurm"),
        ([("start", str(TEN)), ("user", ",".join(["u"] * 65))], "query:user", "at most 64"),
    ],
)
def test_bad_queries_name_the_parameter(
    pairs: list[tuple[str, str]], where: str, says: str
) -> None:
    error = refused(pairs)
    assert error.where == where
    assert says in error.why


def test_the_longest_window_is_accepted() -> None:
    query = read_query([("start", "0"), ("end", str(MAX_WINDOW_SECONDS))], NOW)
    assert query.end - query.start == MAX_WINDOW_SECONDS


def test_slices_cover_the_window_without_gaps() -> None:
    start = TEN + 17
    end = start + 2 * SLICE_SECONDS + 5
    cut = slices(start, end)
    assert cut == [
        (start, start + SLICE_SECONDS),
        (start + SLICE_SECONDS, start + 2 * SLICE_SECONDS),
        (start + 2 * SLICE_SECONDS, end),
    ]
    assert slices(start, start + 10) == [(start, start + 10)]
    assert len(slices(0, MAX_WINDOW_SECONDS)) == 366
