"""TokenStore: verification, reloads that swap whole tables, broken files, SIGHUP."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import os
import signal
import threading
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from slurmgate.server.config import parse_settings
from slurmgate.server.errors import ConfigError
from slurmgate.server.identity import secret as secret_module
from slurmgate.server.identity import tokens
from slurmgate.server.identity.refusal import Refused
from slurmgate.server.identity.tokenfile import TokenEntry
from slurmgate.server.identity.tokens import FileSignature, TokenStore, tokens_ctx
from slurmgate.server.keys import SETTINGS, TOKENS
from tests.server.identity.factory import NOW, make_entry, write_tokens

WAIT = 10  # seconds: a bound on waiting for the watcher, never a sleep


class Clock:
    """A settable clock for expiry tests."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _rewrite(path: Path, old: str, new: str, *, append: str = "", keep_stat: bool = False) -> None:
    """Edit ``path`` in place; with ``keep_stat``, put its mtime back (size must not change)."""
    stat = path.stat()
    with path.open("r+") as file:
        text = file.read().replace(old, new) + append
        file.seek(0)
        file.write(text)
        file.truncate()
    if keep_stat:
        assert path.stat().st_size == stat.st_size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.toml"


def test_a_good_secret_gives_the_entrys_identity(path: Path) -> None:
    secret, entry = make_entry("ci", "alice", scopes=("slurm:read",), accounts=("^physics$",))
    write_tokens(path, entry)
    store = TokenStore(path, known_scopes={"slurm:read"}, clock=Clock())
    identity = store.verify(secret, "192.0.2.1")
    assert identity.user == "alice"
    assert identity.method == "token"
    assert identity.name == "ci"
    assert identity.scopes == frozenset({"slurm:read"})
    assert [p.pattern for p in identity.accounts] == ["^physics$"]


def test_unknown_name_and_wrong_secret_look_the_same_and_cost_the_same(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, entry = make_entry("ci")
    write_tokens(path, entry)
    store = TokenStore(path, clock=Clock())
    wrong = secret_module.mint("ci", "alice", now=NOW, expires=None)
    unknown = secret_module.mint("nobody", "alice", now=NOW, expires=None)
    calls: list[str] = []
    real_digest, real_compare = secret_module.digest, hmac.compare_digest

    def counting_digest(secret: str) -> str:
        calls.append("digest")
        return real_digest(secret)

    def counting_compare(a: str, b: str) -> bool:
        calls.append("compare")
        return bool(real_compare(a, b))

    monkeypatch.setattr("slurmgate.server.identity.tokens.digest", counting_digest)
    monkeypatch.setattr("hmac.compare_digest", counting_compare)
    refusals = []
    for secret in (wrong, unknown):
        calls.clear()
        with pytest.raises(Refused) as refused:
            store.verify(secret, "192.0.2.1")
        assert calls == ["digest", "compare"]
        refusals.append(refused.value)
    assert refusals[0].description == refusals[1].description == "invalid bearer token"
    assert (refusals[0].reason, refusals[0].name) == ("wrong secret", "ci")
    assert (refusals[1].reason, refusals[1].name) == ("unknown token name 'nobody'", None)


def test_a_secret_for_another_entry_with_the_same_user_is_refused(path: Path) -> None:
    secret_a, entry_a = make_entry("a")
    _, entry_b = make_entry("b")
    write_tokens(path, entry_a, entry_b)
    store = TokenStore(path, clock=Clock())
    # The secret is bound to its own digest: changing its jti points it at another entry.
    forged = secret_module.mint("b", "alice", now=NOW, expires=None)
    with pytest.raises(Refused):
        store.verify(forged, None)
    assert store.verify(secret_a, None).name == "a"


def test_expired_and_revoked_tokens_are_refused_only_to_their_holder(path: Path) -> None:
    clock = Clock()
    s_exp, expiring = make_entry("exp", expires=NOW + timedelta(hours=1))
    s_rev, revoked = make_entry("rev", revoked=NOW - timedelta(seconds=1))
    s_later, later = make_entry("later", revoked=NOW + timedelta(hours=1))
    write_tokens(path, expiring, revoked, later)
    store = TokenStore(path, clock=clock)
    assert store.verify(s_exp, None).name == "exp"
    assert store.verify(s_later, None).name == "later"
    with pytest.raises(Refused) as refused:
        store.verify(s_rev, None)
    assert (refused.value.description, refused.value.name) == ("bearer token revoked", "rev")
    clock.now = NOW + timedelta(hours=1)
    for secret, status in ((s_exp, "expired"), (s_later, "revoked")):
        with pytest.raises(Refused) as refused:
            store.verify(secret, None)
        assert refused.value.description == f"bearer token {status}"
    # Without the secret, nobody learns that "rev" is revoked: the answer is the generic one.
    with pytest.raises(Refused) as refused:
        store.verify(secret_module.mint("rev", "alice", now=NOW, expires=None), None)
    assert refused.value.description == "invalid bearer token"


@pytest.mark.parametrize(
    ("remote", "accepted"),
    [
        ("10.2.3.4", True),
        ("::ffff:10.2.3.4", True),
        ("2001:db8::7", True),
        ("192.168.1.1", False),
        ("2001:db9::7", False),
        (None, False),
        ("not an address", False),
    ],
)
def test_networks_restrict_where_a_token_works(
    path: Path, remote: str | None, accepted: bool
) -> None:
    secret, entry = make_entry("net", networks=("10.0.0.0/8", "2001:db8::/32"))
    write_tokens(path, entry)
    store = TokenStore(path, clock=Clock())
    if accepted:
        assert store.verify(secret, remote).name == "net"
    else:
        with pytest.raises(Refused) as refused:
            store.verify(secret, remote)
        assert refused.value.description == "bearer token not valid from this address"
        assert refused.value.name == "net"


def test_a_broken_file_does_not_start(path: Path) -> None:
    path.write_text('[[token]]\nname = "x"\n')
    with pytest.raises(ConfigError) as caught:
        TokenStore(path)
    assert caught.value.problems
    assert all(p.startswith(f"{path}: [[token]] #1 'x': ") for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        TokenStore(path.with_name("missing.toml"))
    assert caught.value.problems == [
        f"{path.with_name('missing.toml')}: cannot read: No such file or directory"
    ]


async def test_refresh_swaps_in_an_edited_file(path: Path) -> None:
    s_old, old = make_entry("old")
    s_new, new = make_entry("new")
    write_tokens(path, old)
    store = TokenStore(path, clock=Clock())
    assert await store.refresh() is False  # unchanged: not even read
    assert store.attempts == 0
    write_tokens(path, dataclasses.replace(old, revoked=NOW), new)
    assert await store.refresh() is True
    assert store.verify(s_new, None).name == "new"
    with pytest.raises(Refused, match="revoked"):
        store.verify(s_old, None)


async def test_a_reader_sees_the_old_table_or_the_new_one_never_a_mix(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s_a, a = make_entry("a")
    s_b, b = make_entry("b")
    write_tokens(path, a)
    store = TokenStore(path, clock=Clock())
    parsed, proceed = threading.Event(), threading.Event()
    real_read = tokens._read

    def slow_read(
        path: Path, known_scopes: Collection[str] | None
    ) -> tuple[FileSignature, dict[str, TokenEntry]]:
        result = real_read(path, known_scopes)  # the new table is complete here...
        parsed.set()
        assert proceed.wait(WAIT)  # ...but not yet handed over
        return result

    monkeypatch.setattr(tokens, "_read", slow_read)
    write_tokens(path, dataclasses.replace(a, revoked=NOW), b)
    reload = asyncio.create_task(store.refresh())
    assert await asyncio.to_thread(parsed.wait, WAIT)
    # Mid-reload: entirely the old table.
    assert store.verify(s_a, None).name == "a"
    with pytest.raises(Refused, match="invalid"):
        store.verify(s_b, None)
    proceed.set()
    assert await reload is True
    # After: entirely the new one.
    assert store.verify(s_b, None).name == "b"
    with pytest.raises(Refused, match="revoked"):
        store.verify(s_a, None)


async def test_a_broken_edit_keeps_the_old_table_and_logs_every_problem_once(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret, entry = make_entry("keep")
    write_tokens(path, entry)
    store = TokenStore(path, known_scopes={"slurm:read"}, clock=Clock())
    _rewrite(path, '"slurm:read"', '"slurm:nope"', append='\n[[token]]\nname = "x y"\n')
    with caplog.at_level(logging.ERROR, logger="slurmgate.auth"):
        assert await store.refresh() is False
        assert await store.refresh() is False  # same broken file: not read, not logged again
    assert store.verify(secret, None).name == "keep"
    (record,) = caplog.records
    assert record.name == "slurmgate.auth"
    message = record.getMessage()
    assert "not reloaded, keeping the 1 entries loaded before" in message
    assert f"{path}: [[token]] #1 'keep': scopes: unknown scope 'slurm:nope'" in message
    assert f"{path}: [[token]] #2 'x y': name: 'x y' does not match" in message
    assert f"{path}: [[token]] #2 'x y': digest: missing" in message
    assert entry.digest not in message
    # Fixed: loaded.
    write_tokens(path, entry)
    assert await store.refresh() is True


async def test_a_deleted_file_keeps_the_old_table(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret, entry = make_entry("keep")
    write_tokens(path, entry)
    store = TokenStore(path, clock=Clock())
    await asyncio.to_thread(path.unlink)
    with caplog.at_level(logging.ERROR, logger="slurmgate.auth"):
        assert await store.refresh() is False
        assert await store.refresh() is False
    assert [r.getMessage() for r in caplog.records] == [
        f"tokens file {path}: cannot read (No such file or directory); keeping the 1 entries "
        "loaded before"
    ]
    assert store.verify(secret, None).name == "keep"


async def test_the_watcher_notices_an_edit(path: Path) -> None:
    s_old, old = make_entry("old")
    s_new, new = make_entry("new")
    write_tokens(path, old)
    store = TokenStore(path, clock=Clock())
    store.start(interval=0.01, sighup=False)
    try:
        before = store.attempts
        write_tokens(path, new)
        async with asyncio.timeout(WAIT):
            await store.wait_for_reload(before)
        assert store.verify(s_new, None).name == "new"
        with pytest.raises(Refused):
            store.verify(s_old, None)
    finally:
        await store.stop()


async def test_sighup_reloads_even_an_edit_the_watcher_cannot_see(path: Path) -> None:
    secret, entry = make_entry("e")
    write_tokens(path, entry)
    store = TokenStore(path, clock=Clock())
    # Same size, same inode, same mtime: an in-place edit that polling cannot tell apart.
    other = secret_module.mint("e", "alice", now=NOW, expires=None)
    _rewrite(path, entry.digest, secret_module.digest(other), keep_stat=True)
    assert await store.refresh() is False
    store.start(interval=3600, sighup=True)
    try:
        before = store.attempts
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(WAIT):
            await store.wait_for_reload(before)
        assert store.verify(other, None).name == "e"
        with pytest.raises(Refused):
            store.verify(secret, None)
    finally:
        await store.stop()
    # stop() gave SIGHUP back: no handler of ours is left on the loop.
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


def _app(path: Path) -> web.Application:
    app = web.Application()
    app[SETTINGS] = parse_settings(
        {
            "upstream": {"url": "http://127.0.0.1:1"},
            "slurm_user_token": {"jwt_key": "/nonexistent"},
            "auth": {"tokens_file": str(path)},
        },
        origin="test",
    )
    app.cleanup_ctx.append(tokens_ctx)
    return app


async def test_tokens_ctx_loads_the_configured_file_and_stops_watching(path: Path) -> None:
    secret, entry = make_entry("ctx", scopes=("slurm:read", "slurmgate:meta"))
    write_tokens(path, entry)
    app = _app(path)
    runner = web.AppRunner(app)
    await runner.setup()
    store = app[TOKENS]
    assert store.verify(secret, None).name == "ctx"
    assert store._watcher is not None
    await runner.cleanup()
    assert store._watcher is None


async def test_tokens_ctx_refuses_a_scope_the_policies_do_not_declare(path: Path) -> None:
    _, entry = make_entry("ctx", scopes=("slurm:everything",))
    write_tokens(path, entry)
    runner = web.AppRunner(_app(path))
    with pytest.raises(ConfigError, match="unknown scope 'slurm:everything'"):
        await runner.setup()
    await runner.cleanup()


async def test_a_remembered_secret_is_voided_by_a_reload(path: Path) -> None:
    s_old, old = make_entry("old", scopes=("slurm:read",))
    write_tokens(path, old)
    store = TokenStore(path, known_scopes={"slurm:read", "slurmdb:read"}, clock=Clock())
    for _ in range(2):  # the second time from memory
        assert store.verify(s_old, None).scopes == frozenset({"slurm:read"})
    write_tokens(path, dataclasses.replace(old, revoked=NOW))
    assert await store.refresh() is True
    with pytest.raises(Refused, match="revoked"):
        store.verify(s_old, None)
    write_tokens(path, dataclasses.replace(old, scopes=("slurm:read", "slurmdb:read")))
    assert await store.refresh() is True
    assert store.verify(s_old, None).scopes == frozenset({"slurm:read", "slurmdb:read"})


def test_only_matching_secrets_are_remembered_and_at_most_so_many(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "_MEMO_SIZE", 2)
    made = [make_entry(f"t{n}") for n in range(3)]
    write_tokens(path, *(entry for _, entry in made))
    store = TokenStore(path, clock=Clock())
    forged = secret_module.mint("t0", "alice", now=NOW, expires=None)
    with pytest.raises(Refused):
        store.verify(forged, None)
    assert forged not in store._memo
    for secret, entry in made:
        assert store.verify(secret, None).name == entry.name
    assert list(store._memo) == [made[1][0], made[2][0]]  # the oldest went first
    assert store.verify(made[0][0], None).name == "t0"  # forgotten, verified again
