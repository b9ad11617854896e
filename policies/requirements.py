"""Group and network requirements: which rules pick an operation, and what a caller lacks.

A rule (``[[authorization.require]]`` in the configuration) picks operations by scope or by
operation id and requires the caller's user to be in one of its Unix groups and the request to
come from one of its networks; every rule that picks an operation must be satisfied. Matching is
pure. Group membership is read from the user database (:func:`user_groups`, blocking: run it in a
thread) and remembered briefly by :class:`GroupCache`. No aiohttp here, and nothing of the server:
the cache's single-flight is passed in (any :class:`Flight`, the server's ``SingleFlight``).
"""

from __future__ import annotations

import asyncio
import grp
import ipaddress
import os
import pwd
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slurmgate.policies.routing import Route

__all__ = [
    "Flight",
    "GroupCache",
    "Requirement",
    "applicable",
    "missing_group",
    "outside_networks",
    "source_address",
    "user_groups",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Requirement:
    """Operations picked by ``scopes`` or ``operations`` need a group and a network listed here.

    Empty ``groups`` or ``networks`` means no requirement of that kind.
    """

    scopes: frozenset[str]
    operations: frozenset[str]
    groups: tuple[str, ...]
    networks: tuple[Network, ...]
    #: where the rule was written, for messages: "authorization.require.1" (0-based, as
    #: configuration errors name it)
    origin: str

    def applies(self, route: Route) -> bool:
        """Whether this rule picks ``route`` (by its scope or its operation id)."""
        return route.scope in self.scopes or route.operation_id in self.operations


def applicable(requirements: Iterable[Requirement], route: Route) -> tuple[Requirement, ...]:
    """Every rule that picks ``route``, in configuration order."""
    return tuple(rule for rule in requirements if rule.applies(route))


def source_address(remote: str | None) -> Address | None:
    """The request's source address (an IPv4-mapped IPv6 one as IPv4), None when unknown."""
    if remote is None:
        return None
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return None  # a unix socket peer, say: in no network
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def outside_networks(rules: Iterable[Requirement], address: Address | None) -> Requirement | None:
    """The first rule whose networks do not contain ``address`` (an unknown one is in none)."""
    for rule in rules:
        if rule.networks and (address is None or not any(address in n for n in rule.networks)):
            return rule
    return None


def missing_group(rules: Iterable[Requirement], groups: frozenset[str]) -> Requirement | None:
    """The first rule none of whose groups is in ``groups``."""
    for rule in rules:
        if rule.groups and groups.isdisjoint(rule.groups):
            return rule
    return None


# --- the user database ----------------------------------------------------------------------


def _records(path: Path) -> Iterator[list[str]]:
    """The colon-separated fields of each line of a passwd(5) or group(5) file."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line[:1] not in ("", "#", "+", "-"):  # NIS compat entries are not users
                yield line.rstrip("\n").split(":")


def _primary_gid(user: str, passwd_file: Path | None) -> int:
    if passwd_file is None:
        try:
            return pwd.getpwnam(user).pw_gid
        except KeyError:
            raise LookupError(f"no user {user!r} in the system's user database") from None
    for fields in _records(passwd_file):
        if len(fields) >= 4 and fields[0] == user and fields[3].isdigit():
            return int(fields[3])
    raise LookupError(f"no user {user!r} in {passwd_file}")


def user_groups(
    user: str, *, passwd_file: Path | None = None, group_file: Path | None = None
) -> frozenset[str]:
    """The names of ``user``'s groups, primary and supplementary; LookupError for no such user.

    Without files: the system's user database (``pwd``, ``os.getgrouplist``, ``grp``), so NSS
    sources such as LDAP count. With either file: the user's primary group from ``passwd_file``
    (else ``pwd``), and every group of ``group_file`` (else ``grp.getgrall``) with that gid or
    listing the user as a member. Blocking: call it in a thread.
    """
    gid = _primary_gid(user, passwd_file)
    if passwd_file is None and group_file is None:
        names = set()
        for member_gid in os.getgrouplist(user, gid):
            try:
                names.add(grp.getgrgid(member_gid).gr_name)
            except KeyError:
                continue  # a gid without a name cannot be listed in a rule
        return frozenset(names)
    if group_file is None:
        entries = [(g.gr_name, g.gr_gid, g.gr_mem) for g in grp.getgrall()]
    else:
        entries = [
            (fields[0], int(fields[2]), fields[3].split(","))
            for fields in _records(group_file)
            if len(fields) >= 4 and fields[2].isdigit()
        ]
    return frozenset(name for name, g, members in entries if g == gid or user in members)


class Flight(Protocol):
    """Single-flight by user: one ``work()`` per key at a time, its result shared by every caller
    meanwhile, a waiter's cancellation not cancelling it, a failure never remembered."""

    async def do(
        self, key: str, work: Callable[[], Coroutine[Any, Any, frozenset[str]]]
    ) -> tuple[frozenset[str], bool]:
        """``work()``'s result, and whether this call started it."""
        ...


class GroupCache:
    """Each user's groups, resolved in a thread and kept ``ttl`` seconds.

    One resolution per user at a time through ``flight`` (later callers wait for it; one giving
    up does not cancel it); a failure is never kept, so the next request tries again, and the
    caller refuses meanwhile (fail closed). ``flight`` serves this cache alone: its keys are
    user names.
    """

    def __init__(
        self,
        resolve: Callable[[str], frozenset[str]],
        *,
        ttl: float,
        flight: Flight,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 10000,
    ) -> None:
        self._resolve = resolve
        self._ttl = ttl
        self._clock = clock
        self._max_users = max_users
        # user -> (valid until, groups); written only by _resolve_and_keep, on the event loop
        self._known: dict[str, tuple[float, frozenset[str]]] = {}
        # the resolutions under way, by user
        self._flight = flight

    async def groups(self, user: str) -> frozenset[str]:
        """``user``'s group names; raises what the resolution raised (LookupError, OSError...)."""
        known = self._known.get(user)
        if known is not None and known[0] > self._clock():
            return known[1]
        groups, _ = await self._flight.do(user, lambda: self._resolve_and_keep(user))
        return groups

    async def _resolve_and_keep(self, user: str) -> frozenset[str]:
        groups = await asyncio.to_thread(self._resolve, user)
        if self._ttl > 0:
            if len(self._known) >= self._max_users:
                self._known.clear()  # bounded memory; the next requests resolve again
            self._known[user] = (self._clock() + self._ttl, groups)
        return groups
