"""Group and network requirements: matching rules to operations, the user database, the cache."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pwd
import threading
from pathlib import Path

import pytest

from slurmgate.generated import ROUTES
from slurmgate.policies.requirements import (
    GroupCache,
    Requirement,
    applicable,
    missing_group,
    outside_networks,
    source_address,
    user_groups,
)
from slurmgate.policies.routing import Route
from slurmgate.server.cache.flight import SingleFlight

WAIT = 10  # seconds: a bound on waiting for threads, never a sleep


def route(method: str, path: str, version: str = "v0.0.45") -> Route:
    return next(r for r in ROUTES[version] if (r.method, r.path) == (method, path))


RECONFIGURE = route("GET", "/slurm/v0.0.45/reconfigure/")
CLUSTERS = route("POST", "/slurmdb/v0.0.45/clusters/")
JOBS = route("GET", "/slurm/v0.0.45/jobs/")


def rule(
    *,
    scopes: tuple[str, ...] = (),
    operations: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    networks: tuple[str, ...] = (),
    origin: str = "r",
) -> Requirement:
    return Requirement(
        frozenset(scopes),
        frozenset(operations),
        groups,
        tuple(ipaddress.ip_network(n) for n in networks),
        origin,
    )


# --- matching -------------------------------------------------------------------------------------


def test_a_rule_picks_operations_by_scope_or_by_operation_id() -> None:
    by_scope = rule(scopes=("slurm:reconfigure",), groups=("hpcadmin",), origin="a")
    by_id = rule(operations=("slurmdb_v0045_post_clusters",), networks=("10.0.0.0/8",), origin="b")
    both = rule(scopes=("slurmdb:clusters:manage",), groups=("ops",), origin="c")
    rules = (by_scope, by_id, both)
    assert applicable(rules, RECONFIGURE) == (by_scope,)
    assert applicable(rules, CLUSTERS) == (by_id, both)  # configuration order
    assert applicable(rules, JOBS) == ()
    # An operation id names one version: the same operation in v0.0.44 is not picked by it.
    assert applicable((by_id,), route("POST", "/slurmdb/v0.0.44/clusters/", "v0.0.44")) == ()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),  # an IPv4 client on a dual-stack socket
        ("2001:db8::1", "2001:db8::1"),
        ("", None),
        ("not-an-address", None),
        (None, None),
    ],
)
def test_source_address(remote: str | None, expected: str | None) -> None:
    address = source_address(remote)
    assert (None if address is None else str(address)) == expected


def test_every_rule_with_networks_must_contain_the_address() -> None:
    admin = rule(scopes=("s",), networks=("10.0.0.0/24", "127.0.0.1/32"), origin="admin")
    lan = rule(scopes=("s",), networks=("10.0.0.0/8",), origin="lan")
    groups_only = rule(scopes=("s",), groups=("g",), origin="groups")
    rules = (groups_only, admin, lan)
    assert outside_networks(rules, ipaddress.ip_address("10.0.0.7")) is None
    assert outside_networks(rules, ipaddress.ip_address("127.0.0.1")) is lan
    assert outside_networks(rules, ipaddress.ip_address("10.9.0.1")) is admin
    assert outside_networks(rules, ipaddress.ip_address("2001:db8::1")) is admin
    assert outside_networks(rules, None) is admin  # no address: in no network
    assert outside_networks((groups_only,), None) is None


def test_every_rule_with_groups_needs_one_of_them() -> None:
    admins = rule(scopes=("s",), groups=("hpcadmin", "root"), origin="admins")
    ops = rule(scopes=("s",), groups=("ops",), origin="ops")
    networks_only = rule(scopes=("s",), networks=("10.0.0.0/8",))
    rules = (networks_only, admins, ops)
    assert missing_group(rules, frozenset({"hpcadmin", "ops", "users"})) is None
    assert missing_group(rules, frozenset({"root", "ops"})) is None
    assert missing_group(rules, frozenset({"hpcadmin"})) is ops
    assert missing_group(rules, frozenset()) is admins
    assert missing_group((networks_only,), frozenset()) is None


# --- the user database ----------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "alice:x:2001:2001::/home/alice:/bin/sh\n"
        "dora:x:2004:3000::/home/dora:/bin/sh\n"  # primary group hpcadmin, listed nowhere
        "+nis::::::\n"
    )
    group = tmp_path / "group"
    group.write_text(
        "root:x:0:\n"
        "alice:x:2001:\n"
        "hpcadmin:x:3000:\n"
        "physics:x:3001:alice,dora\n"
        "chem:x:3002:bob\n"
        "broken line\n"
        "+nisgroup:::alice\n"
    )
    return passwd, group


def test_groups_from_files_are_the_primary_group_and_the_memberships(
    files: tuple[Path, Path],
) -> None:
    passwd, group = files
    assert user_groups("alice", passwd_file=passwd, group_file=group) == {"alice", "physics"}
    assert user_groups("dora", passwd_file=passwd, group_file=group) == {"hpcadmin", "physics"}
    # bob is listed as a member of chem, but has no passwd entry: unknown, so no groups at all.
    with pytest.raises(LookupError, match="no user 'bob' in"):
        user_groups("bob", passwd_file=passwd, group_file=group)
    with pytest.raises(LookupError):
        user_groups("nis", passwd_file=passwd, group_file=group)


def test_groups_from_the_system_user_database() -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    groups = user_groups(me)
    assert groups
    # The same answer through getgrall, as a deployment with only a passwd file set reads it
    # (this machine's users and groups are local files).
    assert user_groups(me, passwd_file=Path("/etc/passwd")) == groups
    with pytest.raises(LookupError, match="no user 'no-such-user-sg' in the system"):
        user_groups("no-such-user-sg")


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        user_groups("alice", passwd_file=tmp_path / "none", group_file=tmp_path / "none")


# --- the cache ------------------------------------------------------------------------------------


class Resolver:
    """Counts calls; answers from ``answers`` (an exception is raised); may block on ``gate``."""

    def __init__(self, *answers: frozenset[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, user: str) -> frozenset[str]:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(WAIT)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_keeps_groups_for_its_time_only() -> None:
    resolver = Resolver(frozenset({"hpcadmin"}), frozenset({"users"}))
    clock = Clock()
    cache = GroupCache(resolver, ttl=60, flight=SingleFlight(), clock=clock)
    assert await cache.groups("dora") == {"hpcadmin"}
    clock.now += 59
    assert await cache.groups("dora") == {"hpcadmin"}
    assert resolver.calls == 1
    clock.now += 1
    assert await cache.groups("dora") == {"users"}
    assert resolver.calls == 2


async def test_failures_are_not_kept() -> None:
    resolver = Resolver(LookupError("no user"), OSError("unreadable"), frozenset({"g"}))
    cache = GroupCache(resolver, ttl=60, flight=SingleFlight(), clock=Clock())
    with pytest.raises(LookupError):
        await cache.groups("dora")
    with pytest.raises(OSError, match="unreadable"):
        await cache.groups("dora")
    assert await cache.groups("dora") == {"g"}
    assert resolver.calls == 3


async def test_ttl_zero_resolves_every_time() -> None:
    resolver = Resolver(frozenset({"a"}), frozenset({"b"}))
    cache = GroupCache(resolver, ttl=0, flight=SingleFlight())
    assert await cache.groups("dora") == {"a"}
    assert await cache.groups("dora") == {"b"}


async def test_concurrent_callers_share_one_resolution() -> None:
    resolver = Resolver(frozenset({"hpcadmin"}))
    resolver.gate.clear()
    cache = GroupCache(resolver, ttl=60, flight=SingleFlight(), clock=Clock())
    first = asyncio.ensure_future(cache.groups("dora"))
    assert await asyncio.to_thread(resolver.entered.wait, WAIT)
    others = [asyncio.ensure_future(cache.groups("dora")) for _ in range(5)]
    # One waiter giving up does not cancel the resolution the others wait for.
    others[0].cancel()
    resolver.gate.set()
    assert await first == {"hpcadmin"}
    assert [await task for task in others[1:]] == [{"hpcadmin"}] * 4
    assert others[0].cancelled()
    assert resolver.calls == 1


async def test_the_first_caller_giving_up_does_not_cancel_the_resolution() -> None:
    resolver = Resolver(frozenset({"hpcadmin"}))
    resolver.gate.clear()
    clock = Clock()
    cache = GroupCache(resolver, ttl=60, flight=SingleFlight(), clock=clock)
    leader = asyncio.ensure_future(cache.groups("dora"))
    assert await asyncio.to_thread(resolver.entered.wait, WAIT)
    follower = asyncio.ensure_future(cache.groups("dora"))
    await asyncio.sleep(0)  # one turn: the follower has joined the resolution under way
    leader.cancel()
    resolver.gate.set()
    assert await follower == {"hpcadmin"}
    assert leader.cancelled()
    # the resolution the leader started was kept for its time
    assert await cache.groups("dora") == {"hpcadmin"}
    assert resolver.calls == 1


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    resolver = Resolver(LookupError("no user"), frozenset({"g"}))
    resolver.gate.clear()
    cache = GroupCache(resolver, ttl=60, flight=SingleFlight(), clock=Clock())
    first = asyncio.ensure_future(cache.groups("dora"))
    assert await asyncio.to_thread(resolver.entered.wait, WAIT)
    second = asyncio.ensure_future(cache.groups("dora"))
    await asyncio.sleep(0)  # one turn: the second caller has joined
    resolver.gate.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(result) for result in results] == [LookupError, LookupError]
    assert resolver.calls == 1
    assert await cache.groups("dora") == {"g"}
    assert resolver.calls == 2
