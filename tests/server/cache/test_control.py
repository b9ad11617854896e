"""The client's Cache-Control directives."""

from __future__ import annotations

import math

import pytest

from slurmgate.server.cache.control import Directives, parse_directives


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Directives()),
        ("", Directives()),
        ("no-cache", Directives(refresh=True)),
        ("NO-CACHE", Directives(refresh=True)),
        ("max-age=0", Directives(refresh=True, max_age=0)),
        ("max-age=30", Directives(max_age=30)),
        ('max-age="30"', Directives(max_age=30)),
        ("no-store", Directives(no_store=True)),
        ("stale-if-error=60", Directives(stale_if_error=60.0)),
        ("stale-if-error", Directives(stale_if_error=math.inf)),
        ("max-age=5, stale-if-error=10", Directives(max_age=5, stale_if_error=10.0)),
        ("no-transform, min-fresh=3", Directives()),
        ("max-age=99999999999999", Directives(max_age=2**31)),
    ],
)
def test_directives(header: str | None, expected: Directives) -> None:
    assert parse_directives(header) == expected


def test_pragma_only_without_cache_control() -> None:
    assert parse_directives(None, "no-cache").refresh
    assert not parse_directives("max-age=10", "no-cache").refresh


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("max-age=abc", "max-age needs a number of seconds"),
        ("max-age=-1", "max-age needs a number of seconds"),
        ("max-age=", "max-age needs a number of seconds"),
        ("stale-if-error=1.5", "stale-if-error needs a number of seconds"),
        ("max-age=١٢", "max-age needs a number of seconds"),
        ("=5", "cannot read directive"),
        ("max age=5", "cannot read directive"),
    ],
)
def test_malformed(header: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_directives(header)
