"""Who sees what: query filters, the token's account patterns and per_user, per change."""

from __future__ import annotations

import re

import pytest

from slurmgate.server.events.changes import Change
from slurmgate.server.events.filters import (
    MAX_VALUES,
    FilterError,
    JobFilter,
    View,
    Visibility,
    parse_filter,
)
from tests.server.events.fakes import record

PHYSICS_ONLY = Visibility(accounts=(re.compile("physics"),))
EVERYTHING = View(Visibility(), JobFilter())


def test_parse_filter_takes_repeats_and_commas() -> None:
    found = parse_filter(
        [("user", "alice,bob"), ("user", "carol"), ("account", "PHYSICS"), ("job_id", "7,8")]
    )
    assert found.users == {"alice", "bob", "carol"}
    assert found.accounts == {"physics"}
    assert found.job_ids == {7, 8}
    assert found.partitions == frozenset()


@pytest.mark.parametrize(
    ("pairs", "key"),
    [
        ([("state", "RUNNING")], "state"),
        ([("user", "")], "user"),
        ([("user", "a,,b")], "user"),
        ([("account", "chem;physics")], "account"),
        ([("partition", "de bug")], "partition"),
        ([("job_id", "07")], "job_id"),
        ([("job_id", "1_2")], "job_id"),
        ([("job_id", "12345678901")], "job_id"),
        ([("user", ",".join(["u"] * (MAX_VALUES + 1)))], "user"),
    ],
)
def test_parse_filter_refuses(pairs: list[tuple[str, str]], key: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(pairs)
    assert caught.value.key == key


def test_filters_match_every_given_set() -> None:
    job = record(7, user="bob", account="chem", partition="debug,batch", array_job_id=5)
    assert JobFilter().matches(job)
    assert JobFilter(users=frozenset({"bob"}), accounts=frozenset({"chem"})).matches(job)
    assert not JobFilter(users=frozenset({"alice"})).matches(job)
    assert JobFilter(partitions=frozenset({"batch"})).matches(job)  # one of a pending job's
    assert not JobFilter(partitions=frozenset({"gpu"})).matches(job)
    assert JobFilter(job_ids=frozenset({5})).matches(job)  # its array
    assert not JobFilter(job_ids=frozenset({8})).matches(job)


def test_a_physics_only_token_never_sees_chem() -> None:
    assert PHYSICS_ONLY.sees(record(1, account="physics"))
    assert not PHYSICS_ONLY.sees(record(2, account="chem"))
    assert not PHYSICS_ONLY.sees(record(3, account="physicsx"))  # full match
    assert not PHYSICS_ONLY.sees(record(4, account=""))
    # asking for chem does not widen it
    view = View(PHYSICS_ONLY, JobFilter(accounts=frozenset({"chem"})))
    assert view.see(Change("appeared", None, record(2, account="chem"))) is None


def test_per_user_shows_only_the_callers_jobs() -> None:
    mine = Visibility(user="alice")
    assert mine.sees(record(1, user="alice"))
    assert not mine.sees(record(2, user="bob"))


def test_kinds_as_one_subscriber_sees_them() -> None:
    view = View(PHYSICS_ONLY, JobFilter())
    new = view.see(Change("appeared", None, record(1)))
    assert new is not None
    assert (new.kind, new.why) == ("appeared", "new")
    changed = view.see(Change("changed", record(1), record(1, "RUNNING")))
    assert changed is not None
    assert (changed.kind, changed.why, changed.before) == ("changed", "state", record(1))
    gone = view.see(Change("left", record(1, "COMPLETED"), None))
    assert gone is not None
    assert (gone.kind, gone.why, gone.job) == ("left", "gone", record(1, "COMPLETED"))


def test_a_job_moved_to_another_account_leaves_without_saying_where() -> None:
    before, after = record(1, account="physics"), record(1, account="chem")
    seen = View(PHYSICS_ONLY, JobFilter()).see(Change("changed", before, after))
    assert seen is not None
    assert (seen.kind, seen.why, seen.job) == ("left", "no_longer_matches", before)
    # and appears for those who may see it now
    came = EVERYTHING.see(Change("changed", before, after))
    assert came is not None
    assert came.kind == "changed"
    moved_in = View(PHYSICS_ONLY, JobFilter()).see(Change("changed", after, before))
    assert moved_in is not None
    assert (moved_in.kind, moved_in.why, moved_in.job) == ("appeared", "matches", before)
