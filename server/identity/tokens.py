"""Bearer tokens: the tokens file in memory, kept current without a restart.

The table of entries is replaced as a whole: a reload parses and checks the new file completely,
then assigns one attribute, so a request sees the old table or the new one, never a mix. A file
that fails to load leaves the old table in place (the gateway keeps serving the tokens it knew,
including their revocations) and logs every problem on ``slurmgate.auth``; the next change of the
file, or SIGHUP, tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from slurmgate.policies.rules import load_scope_rules
from slurmgate.server.errors import ConfigError
from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.refusal import Refused
from slurmgate.server.identity.secret import claimed_name, digest
from slurmgate.server.identity.tokenfile import TokenEntry, parse_tokens
from slurmgate.server.keys import SETTINGS, TOKENS

__all__ = ["FileSignature", "TokenStore", "tokens_ctx"]

log = logging.getLogger("slurmgate.auth")

#: (device, inode, size, mtime in ns): any edit, in place or by rename, changes one of them.
FileSignature = tuple[int, int, int, int]
Clock = Callable[[], datetime]

_INVALID = "invalid bearer token"
# Compared against when the claimed name is unknown, so that an unknown name costs the same
# hashing and comparison as a wrong secret (no entry has this digest: it is not a sha256 output
# anyone can aim for, and the comparison's result is ignored anyway).
_NO_DIGEST = "sha256:" + "0" * 64


def _now() -> datetime:
    return datetime.now(UTC)


def _signature(stat: os.stat_result) -> FileSignature:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _read(
    path: Path, known_scopes: Collection[str] | None
) -> tuple[FileSignature, dict[str, TokenEntry]]:
    """Read and parse the file (blocking); the signature is that of the file actually read."""
    try:
        with path.open("rb") as file:
            signature = _signature(os.fstat(file.fileno()))
            data = file.read()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8: {error}"]) from None
    entries = parse_tokens(text, origin=str(path), known_scopes=known_scopes)
    return signature, {entry.name: entry for entry in entries}


#: Verified secrets remembered per process (see TokenStore._memo).
_MEMO_SIZE = 4096


@functools.lru_cache(maxsize=1024)
def _address(remote: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer address as an ip_address (parsed once per address), None if not an IP."""
    if remote is None:
        return None
    try:
        return ipaddress.ip_address(remote)
    except ValueError:
        return None


class TokenStore:
    """The tokens file's entries; verifies bearer secrets and follows edits of the file."""

    def __init__(
        self,
        path: Path,
        *,
        known_scopes: Collection[str] | None = None,
        clock: Clock = _now,
    ) -> None:
        """Load ``path`` (blocking); :class:`ConfigError` lists every problem in it."""
        self.path = path
        self._known_scopes = known_scopes
        self._clock = clock
        signature, entries = _read(path, known_scopes)
        # Replaced whole, never mutated: readers take one reference (guarded by: assignment only
        # in refresh(), on the event loop, under _lock).
        self._entries: Mapping[str, TokenEntry] = entries
        # The signature of the last file read, loaded or not (guarded by: _lock).
        self._seen: FileSignature | None = signature
        self._lock = asyncio.Lock()
        # Completed reload attempts; _attempted wakes wait_for_reload() (guarded by: _lock).
        self._attempts = 0
        self._attempted = asyncio.Condition()
        self._wake: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._sighup = False
        # Secrets already verified, with the entry object they matched, so that a client sending
        # the same token on every request does not pay decoding and hashing each time. Only
        # secrets that matched get in (garbage cannot fill it); a hit counts only while that very
        # entry object is in the table, so a reload (revocation, new scopes) voids it at once.
        # Python's str hash is keyed per process, so lookups leak nothing usable about secrets.
        # Guarded by the event loop (no await in verify()); at most _MEMO_SIZE, oldest out.
        self._memo: dict[str, tuple[str, TokenEntry]] = {}

    @property
    def entries(self) -> Mapping[str, TokenEntry]:
        """The current table, by name (read-only; a reload replaces it)."""
        return self._entries

    @property
    def attempts(self) -> int:
        """How many reloads have been attempted (successful or not) since start."""
        return self._attempts

    def verify(self, secret: str, remote: str | None) -> Identity:
        """The identity ``secret`` proves from address ``remote``; :class:`Refused` otherwise.

        An unknown name and a wrong secret do the same work and get the same answer; only a
        caller who holds the right secret learns that it is revoked, expired or out of network.
        """
        remembered = self._memo.get(secret)
        if remembered is not None and self._entries.get(remembered[0]) is remembered[1]:
            name, entry = remembered
        else:
            name = claimed_name(secret)
            found = self._entries.get(name)
            matches = hmac.compare_digest(digest(secret), found.digest if found else _NO_DIGEST)
            if found is None:
                raise Refused(_INVALID, reason=f"unknown token name {name!r}")
            if not matches:
                raise Refused(_INVALID, reason="wrong secret", name=name)
            entry = found
            if len(self._memo) >= _MEMO_SIZE:
                del self._memo[next(iter(self._memo))]
            self._memo[secret] = (name, entry)
        # The clock and the address are read only for entries they can refuse.
        if entry.revoked is not None or entry.expires is not None:
            status = entry.status(self._clock())
            if status != "active":
                raise Refused(f"bearer token {status}", reason=f"token {status}", name=name)
        if entry.networks and not entry.allows(_address(remote)):
            raise Refused(
                "bearer token not valid from this address",
                reason=f"source address {remote} outside the token's networks",
                name=name,
            )
        return entry.identity

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the file if it changed (or always, with ``force``); True if the table changed."""
        async with self._lock:
            try:
                return await self._refresh(force)
            finally:
                async with self._attempted:
                    self._attempted.notify_all()

    async def _refresh(self, force: bool) -> bool:
        try:
            stat = await asyncio.to_thread(os.stat, self.path)
        except OSError as error:
            if self._seen is not None or force:
                log.error(
                    "tokens file %s: cannot read (%s); keeping the %d entries loaded before",
                    self.path,
                    error.strerror,
                    len(self._entries),
                )
            self._seen = None
            self._attempts += 1
            return False
        if not force and _signature(stat) == self._seen:
            return False
        self._attempts += 1
        try:
            signature, entries = await asyncio.to_thread(_read, self.path, self._known_scopes)
        except ConfigError as error:
            # A file with the same signature is not tried again until it changes or SIGHUP.
            self._seen = _signature(stat)
            log.error(
                "tokens file %s not reloaded, keeping the %d entries loaded before; "
                "%d problem(s):\n%s",
                self.path,
                len(self._entries),
                len(error.problems),
                "\n".join(error.problems),
            )
            return False
        self._seen = signature
        self._entries = entries
        log.info("tokens file %s reloaded: %d entries", self.path, len(entries))
        return True

    async def wait_for_reload(self, after: int) -> None:
        """Wait until more than ``after`` reload attempts have completed (see :attr:`attempts`)."""
        async with self._attempted:
            await self._attempted.wait_for(lambda: self._attempts > after)

    def start(self, *, interval: float = 1.0, sighup: bool = True) -> None:
        """Watch the file every ``interval`` seconds and, with ``sighup``, reload on SIGHUP."""
        if self._watcher is not None:
            raise RuntimeError("the tokens watcher is already running")
        self._wake = asyncio.Event()
        if sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True
        self._watcher = asyncio.create_task(self._watch(interval), name="slurmgate tokens watcher")

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading tokens file %s", self.path)
        if self._wake is not None:
            self._wake.set()

    async def _watch(self, interval: float) -> None:
        assert self._wake is not None
        while True:
            forced = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
                forced = True
            # Cleared before reading: a SIGHUP during the reload triggers another one.
            self._wake.clear()
            try:
                await self.refresh(force=forced)
            except Exception:
                log.exception("tokens file %s: reload failed", self.path)

    async def stop(self) -> None:
        """Stop watching; the table stays usable."""
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None


async def tokens_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: load ``auth.tokens_file`` into ``app[TOKENS]`` and watch it."""
    path = app[SETTINGS].auth.tokens_file
    scopes = await asyncio.to_thread(lambda: frozenset(load_scope_rules().scopes))
    app[TOKENS] = await asyncio.to_thread(lambda: TokenStore(path, known_scopes=scopes))
    log.info("tokens file %s: %d entries", path, len(app[TOKENS].entries))
    # SIGHUP belongs to reload_ctx (server/ops/reload.py), which reloads this file and more.
    app[TOKENS].start(sighup=False)
    try:
        yield
    finally:
        await app[TOKENS].stop()
