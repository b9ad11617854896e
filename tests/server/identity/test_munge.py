"""MUNGE credentials against the lab's munged: fresh, replayed, old, foreign, from elsewhere."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from slurmgate.server.config import MungeSettings, parse_settings
from slurmgate.server.errors import ConfigError
from slurmgate.server.identity.munge import MungeVerifier, lookup_user, munge_ctx
from slurmgate.server.identity.refusal import Refused
from slurmgate.server.keys import MUNGE, SETTINGS
from tests.lab.env import Lab, LabSuite

pytestmark = pytest.mark.lab

#: The address the lab's munged writes as ENCODE_HOST (its host name resolves to loopback).
ORIGIN = "127.0.0.1"


async def credential(suite: LabSuite, user: str, *flags: str) -> str:
    """``munge -n`` run as ``user`` inside the suite's chroot."""
    done = await asyncio.to_thread(suite.run, "munge", "-n", *flags, user=user)
    return done.stdout.strip()


def verifier(
    suite: LabSuite,
    *,
    socket: Path | None = None,
    passwd_file: Path | None = None,
    unmunge: str = "unmunge",
    clock: Callable[[], float] = time.time,
    replay_capacity: int = 100,
) -> MungeVerifier:
    """A verifier for ``suite``'s munged and users, as munge_ctx would build it."""
    return MungeVerifier(
        max_age=5,
        scopes=("slurm:read",),
        socket=socket or suite.root / "run/munge/munge.socket.2",
        passwd_file=passwd_file or suite.root / "etc/passwd",
        unmunge=unmunge,
        clock=clock,
        replay_capacity=replay_capacity,
    )


@pytest.fixture
def forky(lab: Lab) -> LabSuite:
    return lab.suites["forky"]


async def test_a_fresh_credential_is_the_users_identity(forky: LabSuite) -> None:
    check = verifier(forky)
    identity = await check.verify(await credential(forky, "alice", "-t", "5"), ORIGIN)
    assert identity.user == "alice"
    assert identity.method == "munge"
    assert identity.name == "munge:2001"
    assert identity.scopes == frozenset({"slurm:read"})
    carol = await check.verify(await credential(forky, "carol", "-t", "3"), ORIGIN)
    assert carol.user == "carol"


@pytest.mark.parametrize("user", ["root", "slurm"])
async def test_administrators_may_not_use_munge(forky: LabSuite, user: str) -> None:
    # Any node's root can make credentials; root and SlurmUser are Slurm administrators.
    with pytest.raises(Refused) as refused:
        await verifier(forky).verify(await credential(forky, user, "-t", "5"), ORIGIN)
    assert refused.value.description == f"MUNGE may not act as {user}"


async def test_a_credential_is_accepted_once(forky: LabSuite) -> None:
    check = verifier(forky)
    cred = await credential(forky, "bob", "-t", "5")
    assert (await check.verify(cred, ORIGIN)).user == "bob"
    with pytest.raises(Refused) as refused:
        await check.verify(cred, ORIGIN)
    assert refused.value.reason == "replayed (gateway cache)"
    # A second gateway (empty cache) still refuses it: munged remembers it too.
    with pytest.raises(Refused) as refused:
        await verifier(forky).verify(cred, ORIGIN)
    assert refused.value.reason.startswith("munge status 17: replayed (munged)")


async def test_one_credential_sent_twice_at_once_passes_once(forky: LabSuite) -> None:
    check = verifier(forky)
    cred = await credential(forky, "alice", "-t", "5")
    results = await asyncio.gather(
        check.verify(cred, ORIGIN), check.verify(cred, ORIGIN), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["Identity", "Refused"]
    refusal = next(r for r in results if isinstance(r, Refused))
    assert refusal.reason == "replayed (being checked)"


async def test_garbage_decoded_by_the_real_unmunge_is_not_remembered(forky: LabSuite) -> None:
    check = verifier(forky, replay_capacity=1)
    for garbage in ("MUNGE:AwQFAAB7:", "MUNGE:" + base64.b64encode(os.urandom(90)).decode() + ":"):
        with pytest.raises(Refused) as refused:
            await check.verify(garbage, ORIGIN)
        assert refused.value.description == "invalid MUNGE credential"
    # The cache (room for one) is still empty: a real credential passes.
    assert (await check.verify(await credential(forky, "alice", "-t", "5"), ORIGIN)).user == "alice"


async def test_a_ttl_over_max_age_is_refused(forky: LabSuite) -> None:
    cred = await credential(forky, "alice")  # munge's default TTL: 300 s
    with pytest.raises(Refused) as refused:
        await verifier(forky).verify(cred, ORIGIN)
    assert refused.value.reason == "TTL 300 s over max_age 5 s"
    assert refused.value.description.endswith("(use munge -t 5)")
    assert refused.value.name == "munge:2001"


async def test_a_credential_encoded_too_long_ago_is_refused(forky: LabSuite) -> None:
    # munged would still decode it (TTL 5); the gateway's clock says it is 7 s old.
    later = verifier(forky, clock=lambda: time.time() + 7)
    with pytest.raises(Refused) as refused:
        await later.verify(await credential(forky, "alice", "-t", "5"), ORIGIN)
    assert refused.value.description == "MUNGE credential too old"
    earlier = verifier(forky, clock=lambda: time.time() - 10)
    with pytest.raises(Refused) as refused:
        await earlier.verify(await credential(forky, "alice", "-t", "5"), ORIGIN)
    assert refused.value.description == "MUNGE credential from the future"


async def test_a_credential_from_another_host_is_refused(forky: LabSuite) -> None:
    with pytest.raises(Refused) as refused:
        await verifier(forky).verify(await credential(forky, "alice", "-t", "5"), "127.0.0.2")
    assert refused.value.reason == "encoded on 127.0.0.1, request from 127.0.0.2"
    # An IPv4-mapped IPv6 source is the same host.
    identity = await verifier(forky).verify(
        await credential(forky, "alice", "-t", "5"), "::ffff:127.0.0.1"
    )
    assert identity.user == "alice"


async def test_another_clusters_credential_is_refused(lab: Lab, forky: LabSuite) -> None:
    foreign = await credential(lab.suites["trixie"], "alice", "-t", "5")
    with pytest.raises(Refused) as refused:
        await verifier(forky).verify(foreign, ORIGIN)
    assert refused.value.reason.startswith("munge status 14: invalid credential")
    assert not refused.value.trouble


async def test_the_payload_cannot_pose_as_metadata(forky: LabSuite) -> None:
    # unmunge writes the payload after the metadata unless told otherwise: a payload that looks
    # like "UID: 0" must not change who the caller is.
    payload = "UID:             0\nSTATUS:          0\n"
    cred = await credential(forky, "bob", "-t", "5", "-s", payload)
    assert (await verifier(forky).verify(cred, ORIGIN)).user == "bob"


async def test_a_uid_without_a_name_is_refused(forky: LabSuite, tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    with pytest.raises(Refused) as refused:
        await verifier(forky, passwd_file=passwd).verify(
            await credential(forky, "dora", "-t", "5"), ORIGIN
        )
    assert refused.value.reason == "uid 2004 has no user name"


@pytest.mark.parametrize("bad", ["dora smith", "dora\x1b[2J", "-dora", "d\u00f6ra", "d" * 129])
async def test_a_name_that_is_not_a_user_name_is_refused(
    forky: LabSuite, tmp_path: Path, bad: str
) -> None:
    # The same rule as for token users: the name is sent upstream as X-SLURM-USER-NAME.
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{bad}:x:2004:2004::/home/dora:/bin/sh\n", encoding="utf-8")
    with pytest.raises(Refused) as refused:
        await verifier(forky, passwd_file=passwd).verify(
            await credential(forky, "dora", "-t", "5"), ORIGIN
        )
    assert refused.value.description == "invalid MUNGE credential"
    assert refused.value.reason.startswith("uid 2004's name ")
    assert refused.value.reason.endswith(" is not a valid user name")
    assert "\x1b" not in refused.value.reason  # shown escaped in the log


@pytest.mark.parametrize(
    ("cred", "reason"),
    [
        ("MUNGE:AwQFAAB7:", "munge status 8"),
        ("MUNGE:not base64!:", "not shaped like"),
        ("AwQFAAB7", "not shaped like"),
        ("MUNGE:" + "A" * 2000 + ":", "not shaped like"),
        ("MUNGE:AAAAA:", "not valid base64"),
    ],
)
async def test_garbage_is_refused(forky: LabSuite, cred: str, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        await verifier(forky).verify(cred, ORIGIN)
    assert refused.value.description == "invalid MUNGE credential"
    assert reason in refused.value.reason


async def test_an_unreachable_munged_is_the_gateways_trouble(
    forky: LabSuite, tmp_path: Path
) -> None:
    cred = await credential(forky, "alice", "-t", "5")
    with pytest.raises(Refused) as refused:
        await verifier(forky, socket=tmp_path / "nope").verify(cred, ORIGIN)
    assert refused.value.trouble
    assert refused.value.reason.startswith("munge status 6: cannot reach munged")
    with pytest.raises(Refused) as refused:
        await verifier(forky, unmunge=str(tmp_path / "no-unmunge")).verify(
            await credential(forky, "alice", "-t", "5"), ORIGIN
        )
    assert refused.value.trouble


async def test_a_full_replay_cache_refuses_new_credentials(forky: LabSuite) -> None:
    check = verifier(forky, replay_capacity=1)
    await check.verify(await credential(forky, "alice", "-t", "5"), ORIGIN)
    with pytest.raises(Refused) as refused:
        await check.verify(await credential(forky, "alice", "-t", "5"), ORIGIN)
    assert refused.value.reason == "replay cache full (1 live credentials)"


def test_settings_with_unknown_scopes_or_bad_patterns_do_not_start() -> None:
    settings = MungeSettings(enabled=True, scopes=("slurm:read", "slurm:all"), accounts=("(",))
    with pytest.raises(ConfigError) as caught:
        MungeVerifier.from_settings(settings, known_scopes={"slurm:read"})
    assert caught.value.problems[0] == (
        "auth.munge.scopes: unknown scope 'slurm:all' (see policies/scopes.toml)"
    )
    assert caught.value.problems[1].startswith("auth.munge.accounts[0] '(' is not a regular")


def test_lookup_user_reads_a_passwd_file(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0::/root:/bin/sh\n\nbroken\nalice:x:2001:2001::/home/alice:/bin/sh\n"
    )
    assert lookup_user(2001, passwd) == "alice"
    assert lookup_user(0, passwd) == "root"
    assert lookup_user(7, passwd) is None
    assert lookup_user(0, None) == "root"


def _app(munge: dict[str, object]) -> web.Application:
    app = web.Application()
    app[SETTINGS] = parse_settings(
        {
            "upstream": {"url": "http://127.0.0.1:1"},
            "slurm_user_token": {"jwt_key": "/nonexistent"},
            "auth": {"tokens_file": "/nonexistent", "munge": munge},
        },
        origin="test",
    )
    app.cleanup_ctx.append(munge_ctx)
    return app


async def test_munge_ctx_builds_the_verifier_from_settings(forky: LabSuite) -> None:
    socket = forky.root / "run/munge/munge.socket.2"
    passwd = forky.root / "etc/passwd"
    app = _app(
        {
            "enabled": True,
            "socket": str(socket),
            "passwd_file": str(passwd),
            "max_age": 4,
            "scopes": ["slurm:read", "slurmdb:read"],
            "accounts": ["^physics$"],
        }
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        check = app[MUNGE]
        assert check is not None
        assert (check.socket, check.passwd_file, check.max_age) == (socket, passwd, 4)
        identity = await check.verify(await credential(forky, "alice", "-t", "4"), ORIGIN)
        assert identity.user == "alice"
        assert identity.scopes == frozenset({"slurm:read", "slurmdb:read"})
        assert [p.pattern for p in identity.accounts] == ["^physics$"]
    finally:
        await runner.cleanup()


async def test_munge_ctx_disabled_is_none() -> None:
    app = _app({})
    runner = web.AppRunner(app)
    await runner.setup()
    assert app[MUNGE] is None
    await runner.cleanup()


async def test_munge_ctx_refuses_undeclared_scopes() -> None:
    runner = web.AppRunner(_app({"enabled": True, "scopes": ["slurm:all"]}))
    with pytest.raises(ConfigError, match="unknown scope 'slurm:all'"):
        await runner.setup()
    await runner.cleanup()
