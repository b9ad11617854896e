"""The sreport lab test's choice of where its jobs' records go (tests/server/usage/rollup.py)."""

from __future__ import annotations

from tests.server.usage.rollup import cut


def test_cut_falls_after_the_short_runs_and_inside_the_long_ones() -> None:
    starting = [(100, 106), (100, 120), (101, 121)]
    ending = [(100, 106), (100, 120), (102, 122)]
    at = cut(starting, ending)
    assert at is not None
    for group in (starting, ending):
        assert any(start < at < end for start, end in group)
        assert any(end < at for _, end in group)
    assert at == 113


def test_no_cut_when_a_group_has_no_run_that_ended_first() -> None:
    assert cut([(100, 120), (100, 121)], [(100, 106), (100, 120)]) is None


def test_no_cut_when_a_group_has_no_run_across_it() -> None:
    # the long run of ``ending`` has ended before the short run of ``starting`` does
    assert cut([(100, 106), (130, 140)], [(100, 104), (100, 105)]) is None


def test_a_cut_is_strictly_inside_and_after() -> None:
    # one second apart leaves no instant strictly between: the next gap is used
    assert cut([(100, 106), (100, 120)], [(100, 107), (100, 120)]) == 113
