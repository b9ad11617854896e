"""The query of ``GET /slurmgate/v1/usage``, checked, and its window cut into upstream slices.

``start`` and ``end`` are RFC 3339 times with a zone (``2026-11-21T10:00:00Z``,
``2026-11-21T11:00:00+01:00``), dates (``2026-11-01``: midnight UTC), seconds since the epoch,
or ``now``; ``end`` is ``now`` when left out. ``account`` and ``user`` are comma-separated names;
``group_by`` is ``account`` (the default), ``user`` or ``account,user``. Anything else is refused
with the parameter named (:class:`QueryRefused`), so that one report has one spelling and the
cache holds one entry for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from slurmgate.policies.accounts import ACCOUNT_NAME
from slurmgate.server.identity.tokenfile import USER_PATTERN

__all__ = [
    "GROUPINGS",
    "MAX_NAMES",
    "MAX_WINDOW_SECONDS",
    "SLICE_SECONDS",
    "QueryRefused",
    "UsageQuery",
    "read_query",
    "slices",
]

#: The longest window one request may ask for (a leap year).
MAX_WINDOW_SECONDS = 366 * 86400
#: The window is fetched from slurmdbd one day at a time: each answer stays bounded.
SLICE_SECONDS = 86400
#: Most names one filter may list.
MAX_NAMES = 64
#: ``group_by`` values and the fields they group by.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "account": ("account",),
    "user": ("user",),
    "account,user": ("account", "user"),
}
_PARAMETERS = ("start", "end", "account", "user", "group_by")
_EPOCH = re.compile(r"[0-9]{1,11}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LONGEST_TIME = 40


class QueryRefused(ValueError):
    """A query the usage endpoint cannot answer: ``where`` names the parameter, ``why`` what."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A checked request: the window in seconds since the epoch, ``[start, end)``."""

    start: int
    end: int
    #: accounts (lowercased) and users to count, sorted; empty: no filter
    accounts: tuple[str, ...]
    users: tuple[str, ...]
    group_by: tuple[str, ...]


def _time(name: str, value: str, now: int) -> int:
    where = f"query:{name}"
    if value == "now":
        return now
    if len(value) > _LONGEST_TIME or not value.isascii():
        raise QueryRefused(where, f"{value[:_LONGEST_TIME]!r}... is not a time")
    if _EPOCH.fullmatch(value):
        return int(value)
    try:
        if _DATE.fullmatch(value):
            return int(
                datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).timestamp()
            )
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryRefused(
            where,
            f"{value!r} is not a time: give RFC 3339 with a zone (2026-11-21T10:00:00Z), a date "
            "(2026-11-21, midnight UTC), seconds since the epoch, or now",
        ) from None
    if moment.tzinfo is None:
        raise QueryRefused(
            where,
            f"{value!r} has no time zone: add Z or an offset (+01:00); slurmgate does not guess "
            "the cluster's local time",
        )
    return int(moment.timestamp())


def _names(name: str, value: str, pattern: re.Pattern[str], *, lower: bool) -> tuple[str, ...]:
    where = f"query:{name}"
    names = value.split(",")
    if len(names) > MAX_NAMES:
        raise QueryRefused(where, f"at most {MAX_NAMES} names")
    for item in names:
        if pattern.fullmatch(item) is None:
            raise QueryRefused(where, f"{item[:64]!r} is not a Slurm {name} name")
    return tuple(sorted({item.lower() if lower else item for item in names}))


def read_query(pairs: Sequence[tuple[str, str]], now: int) -> UsageQuery:
    """The checked query (decoded name and value pairs, in order), or :class:`QueryRefused`."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in _PARAMETERS:
            raise QueryRefused(
                f"query:{name[:64]}",
                f"unknown parameter; GET /slurmgate/v1/usage takes: {', '.join(_PARAMETERS)}",
            )
        if name in values:
            raise QueryRefused(f"query:{name}", "given more than once; list names with commas")
        values[name] = value
    if "start" not in values:
        raise QueryRefused("query:start", "the window's start is required")
    start = _time("start", values["start"], now)
    end = _time("end", values.get("end", "now"), now)
    if end <= start:
        raise QueryRefused("query:end", f"the window ends ({end}) at or before it starts ({start})")
    if end - start > MAX_WINDOW_SECONDS:
        raise QueryRefused(
            "query:end",
            f"the window is {end - start} s long; at most {MAX_WINDOW_SECONDS} s (366 days) per "
            "request",
        )
    grouping = values.get("group_by", "account")
    if grouping not in GROUPINGS:
        raise QueryRefused(
            "query:group_by", f"{grouping[:64]!r}: use one of {', '.join(GROUPINGS)}"
        )
    accounts = (
        _names("account", values["account"], ACCOUNT_NAME, lower=True)
        if ("account" in values)
        else ()
    )
    users = _names("user", values["user"], USER_PATTERN, lower=False) if "user" in values else ()
    return UsageQuery(start, end, accounts, users, GROUPINGS[grouping])


def slices(start: int, end: int, step: int = SLICE_SECONDS) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive windows of at most ``step`` seconds."""
    cuts = list(range(start, end, step))
    return [(cut, min(cut + step, end)) for cut in cuts]
