"""``Authorization: MUNGE <credential>``: callers on the cluster prove their uid with munged.

The credential is decoded by Debian's ``unmunge`` (a subprocess, so the event loop never blocks)
against the configured munged socket. Accepted only when all of these hold:

- munged decodes it (right key, not expired, not replayed as far as munged knows);
- its TTL is at most ``max_age`` and it was encoded at most ``max_age`` seconds ago (and not
  more than :data:`FUTURE_SKEW` seconds in the future);
- it was encoded on the host the request comes from (``ENCODE_HOST`` equals the source address);
- the gateway has not decoded it before: a bounded cache keeps the digest of each credential
  munged decoded until the credential is too old to pass the age check anyway (munged's own
  replay cache is per daemon and can be restarted; this one does not depend on it), and a
  credential being decoded cannot be presented again meanwhile;
- its uid has a name (system user database, or the configured passwd-format file) that is a
  valid user name (:data:`~slurmgate.server.identity.tokenfile.USER_PATTERN`, as for tokens).

Only credentials munged decoded are remembered: garbage costs an unmunge run but cannot fill the
replay cache. Decoding is bounded: at most :data:`CONCURRENCY` unmunge processes, at most
:data:`PER_SOURCE` credentials from one address under way, and at most :data:`SLOT_WAIT` seconds
waiting for a process slot (a credential must not expire in a queue); beyond those, requests are
refused and may try again with a new credential.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import ipaddress
import logging
import os
import pwd
import re
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path

from aiohttp import web

from slurmgate.policies.rules import load_scope_rules
from slurmgate.server.config import MungeSettings
from slurmgate.server.errors import ConfigError
from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.refusal import Refused
from slurmgate.server.identity.tokenfile import USER_PATTERN, compile_accounts
from slurmgate.server.keys import MUNGE, SETTINGS

__all__ = [
    "CONCURRENCY",
    "FUTURE_SKEW",
    "PER_SOURCE",
    "SLOT_WAIT",
    "MungeVerifier",
    "lookup_user",
    "munge_ctx",
]

log = logging.getLogger("slurmgate.auth")

#: Seconds a credential's encode time may lie in the future (clocks of cluster nodes drift).
FUTURE_SKEW = 2
#: A credential without payload is about 120 characters; a small payload is tolerated.
MAX_CREDENTIAL_CHARS = 1024
#: unmunge processes running at once; further requests wait for a slot.
CONCURRENCY = 16
#: Seconds a request waits for a free unmunge slot before it is refused.
SLOT_WAIT = 1.0
#: Credentials from one source address decoded (or waiting for a slot) at once: one host cannot
#: take every slot. A login node serving many users shares it; decoding takes ~2 ms.
PER_SOURCE = CONCURRENCY // 2
#: Seconds unmunge may take before the credential is refused and the process killed.
DECODE_TIMEOUT = 5.0
#: Credentials remembered for replay detection; when full of live entries, new ones are refused.
REPLAY_CAPACITY = 65536

_SHAPE = re.compile(r"MUNGE:([A-Za-z0-9+/]+={0,2}):", re.ASCII)
_KEYS = ("STATUS", "ENCODE_HOST", "ENCODE_TIME", "TTL", "UID")
_LINE = re.compile(r"([A-Z_]+):\s+(\S+)", re.ASCII)
_INVALID = "invalid MUNGE credential"
_UNCHECKABLE = "MUNGE credentials cannot be checked right now"
# munge_err_t values (munge.h) worth naming in the log; the rest are logged by number.
_STATUS = {
    1: "munged internal error",
    6: "cannot reach munged",
    7: "munged timed out",
    8: "not a MUNGE credential",
    9: "unsupported credential version",
    10: "unsupported cipher",
    11: "bad MAC (another key, or tampered)",
    12: "unsupported compression",
    13: "bad realm",
    14: "invalid credential",
    15: "expired (munged)",
    16: "rewound: encoded in the future (munged)",
    17: "replayed (munged)",
    18: "unauthorized: restricted to another uid or gid",
}
# Failures on the gateway's side, not the caller's: logged as errors.
_TROUBLE = {1, 2, 4, 5, 6, 7}

Clock = Callable[[], float]


def lookup_user(uid: int, passwd_file: Path | None) -> str | None:
    """The name of ``uid`` in ``passwd_file`` (passwd(5) format) or, without one, in pwd."""
    if passwd_file is None:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return None
    with passwd_file.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 3 and fields[2] == str(uid) and fields[0]:
                return fields[0]
    return None


class MungeVerifier:
    """Checks MUNGE credentials with ``unmunge``; see the module docstring for what it requires."""

    def __init__(
        self,
        *,
        max_age: int,
        scopes: Collection[str] = (),
        accounts: tuple[re.Pattern[str], ...] = (),
        unmunge: str = "unmunge",
        socket: Path | None = None,
        passwd_file: Path | None = None,
        deny_users: Collection[str] = ("root", "slurm"),
        clock: Clock = time.time,
        replay_capacity: int = REPLAY_CAPACITY,
    ) -> None:
        self.max_age = max_age
        self.scopes = frozenset(scopes)
        self.accounts = accounts
        self.unmunge = unmunge
        self.socket = socket
        self.passwd_file = passwd_file
        self.deny_users = frozenset(deny_users)
        self._clock = clock
        self._capacity = replay_capacity
        # digest of each credential munged decoded -> when it may be forgotten; insertion order
        # is expiry order because every entry lives the same time (guarded by: the event loop,
        # no await between the in-flight check and the insert after decoding).
        self._seen: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        # digests of the credentials being decoded; verify() adds and removes its own (guarded
        # by: the event loop, no await between the check and the add).
        self._in_flight: set[bytes] = set()
        # source address -> credentials from it under way (waiting or decoding); verify()
        # counts its own up and down, entries at zero are removed.
        self._per_source: collections.Counter[str] = collections.Counter()
        self._slots = asyncio.Semaphore(CONCURRENCY)

    @classmethod
    def from_settings(
        cls, settings: MungeSettings, *, known_scopes: Collection[str] | None = None
    ) -> MungeVerifier:
        """A verifier for ``auth.munge``; :class:`ConfigError` for unknown scopes, bad patterns."""
        problems = [
            f"auth.munge.scopes: unknown scope {scope!r} (see policies/scopes.toml)"
            for scope in settings.scopes
            if known_scopes is not None and scope not in known_scopes
        ]
        accounts, bad = compile_accounts(settings.accounts)
        problems += [f"auth.munge.{message}" for message in bad]
        if problems:
            raise ConfigError(problems)
        return cls(
            max_age=settings.max_age,
            scopes=settings.scopes,
            accounts=accounts,
            unmunge=settings.unmunge,
            socket=settings.socket,
            passwd_file=settings.passwd_file,
            deny_users=settings.deny_users,
        )

    async def verify(self, credential: str, remote: str | None) -> Identity:
        """The identity ``credential`` proves for a request from ``remote``; or :class:`Refused`."""
        shape = _SHAPE.fullmatch(credential) if len(credential) <= MAX_CREDENTIAL_CHARS else None
        if shape is None:
            raise Refused(_INVALID, reason="credential is not shaped like MUNGE:<base64>:")
        try:
            origin = ipaddress.ip_address(remote or "")
        except ValueError:
            raise Refused(_INVALID, reason=f"no usable source address ({remote!r})") from None
        if isinstance(origin, ipaddress.IPv6Address) and origin.ipv4_mapped is not None:
            origin = origin.ipv4_mapped
        try:
            key = hashlib.sha256(base64.b64decode(shape.group(1), validate=True)).digest()
        except binascii.Error:
            raise Refused(_INVALID, reason="credential is not valid base64") from None
        self._refuse_replay(key)
        source = str(origin)
        if self._per_source[source] >= PER_SOURCE:
            raise Refused(
                "too many MUNGE credentials from this address at once, retry shortly",
                reason=f"{PER_SOURCE} MUNGE credentials from {source} already being checked",
            )
        self._in_flight.add(key)
        self._per_source[source] += 1
        try:
            fields = await self._decode(credential)
            # munged decoded it (and now refuses it as replayed): from here on it is used,
            # whatever the checks below say.
            self._remember(key)
        finally:
            self._in_flight.discard(key)
            self._per_source[source] -= 1
            if not self._per_source[source]:
                del self._per_source[source]
        return await self._check(fields, origin)

    def _refuse_replay(self, key: bytes) -> None:
        """Refuse a credential decoded before or being decoded, or when none can be remembered."""
        now = self._clock()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if key in self._seen:
            raise Refused("MUNGE credential already used", reason="replayed (gateway cache)")
        if key in self._in_flight:
            raise Refused("MUNGE credential already used", reason="replayed (being checked)")
        self._refuse_when_full()

    def _refuse_when_full(self) -> None:
        if len(self._seen) >= self._capacity:
            raise Refused(
                _UNCHECKABLE,
                reason=f"replay cache full ({self._capacity} live credentials)",
                trouble=True,
            )

    def _remember(self, key: bytes) -> None:
        """Remember a credential munged decoded, so that it passes at most once."""
        self._refuse_when_full()  # filled by others while this one was decoded
        # Past this, the age check refuses the credential anyway: encoded at most FUTURE_SKEW
        # after now, accepted at most max_age after that (plus a second of rounding).
        self._seen[key] = self._clock() + self.max_age + FUTURE_SKEW + 1

    async def _decode(self, credential: str) -> dict[str, str]:
        """unmunge's metadata for ``credential``; the payload goes to /dev/null, never parsed."""
        args = [self.unmunge, "--numeric", "--keys=" + ",".join(_KEYS), "--output=/dev/null"]
        if self.socket is not None:
            args.append(f"--socket={self.socket}")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        async with self._slot():
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            except OSError as error:
                raise Refused(
                    _UNCHECKABLE,
                    reason=f"cannot run {self.unmunge}: {error.strerror}",
                    trouble=True,
                ) from None
            try:
                async with asyncio.timeout(DECODE_TIMEOUT):
                    out, err = await proc.communicate(credential.encode("ascii"))
            except TimeoutError:
                raise Refused(
                    _UNCHECKABLE,
                    reason=f"{self.unmunge} gave no answer within {DECODE_TIMEOUT} s",
                    trouble=True,
                ) from None
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        fields = _parse(out.decode("ascii", "replace"))
        status = fields.get("STATUS", str(proc.returncode))
        if proc.returncode != 0 or status != "0":
            code = int(status) if status.isdigit() else -1
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise Refused(
                _UNCHECKABLE if code in _TROUBLE else _INVALID,
                reason=f"munge status {status}: {_STATUS.get(code, 'error')}"
                + (f" ({detail[-1]})" if detail else ""),
                trouble=code in _TROUBLE,
            )
        return fields

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the :data:`CONCURRENCY` unmunge slots; refused after :data:`SLOT_WAIT` s."""
        try:
            async with asyncio.timeout(SLOT_WAIT):
                await self._slots.acquire()
        except TimeoutError:
            raise Refused(
                _UNCHECKABLE,
                reason=f"all {CONCURRENCY} unmunge slots busy for {SLOT_WAIT:g} s",
                trouble=True,
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def _check(
        self, fields: dict[str, str], origin: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> Identity:
        try:
            ttl = int(fields["TTL"])
            encoded = int(fields["ENCODE_TIME"])
            uid = int(fields["UID"])
            host = ipaddress.ip_address(fields["ENCODE_HOST"])
        except (KeyError, ValueError):
            raise Refused(
                _INVALID, reason=f"unexpected unmunge output {sorted(fields)}", trouble=True
            ) from None
        name = f"munge:{uid}"
        if ttl > self.max_age:
            raise Refused(
                f"MUNGE credential TTL over {self.max_age} s (use munge -t {self.max_age})",
                reason=f"TTL {ttl} s over max_age {self.max_age} s",
                name=name,
            )
        age = self._clock() - encoded
        if age > self.max_age or age < -FUTURE_SKEW:
            raise Refused(
                "MUNGE credential too old" if age > 0 else "MUNGE credential from the future",
                reason=f"encoded {age:.0f} s ago, max_age {self.max_age} s",
                name=name,
            )
        if host != origin:
            raise Refused(
                "MUNGE credential encoded on another host",
                reason=f"encoded on {host}, request from {origin}",
                name=name,
            )
        user = await asyncio.to_thread(lookup_user, uid, self.passwd_file)
        if user is None:
            raise Refused(_INVALID, reason=f"uid {uid} has no user name", name=name)
        if not USER_PATTERN.fullmatch(user):
            # The name goes upstream as X-SLURM-USER-NAME: held to the rule token users follow.
            raise Refused(
                _INVALID,
                reason=f"uid {uid}'s name {user[:64]!r} is not a valid user name",
                name=name,
            )
        if user in self.deny_users or uid == 0:
            raise Refused(
                f"MUNGE may not act as {user}",
                reason=f"{user} is in auth.munge.deny_users (or is uid 0)",
                name=name,
            )
        return Identity(
            user=user, method="munge", name=name, scopes=self.scopes, accounts=self.accounts
        )


def _parse(out: str) -> dict[str, str]:
    """``KEY: value`` lines up to the first blank one; a repeated or unasked key voids it all."""
    fields: dict[str, str] = {}
    for line in out.splitlines():
        if not line.strip():
            break
        match = _LINE.fullmatch(line.strip())
        if match is None or match.group(1) not in _KEYS or match.group(1) in fields:
            return {}
        fields[match.group(1)] = match.group(2)
    return fields


async def munge_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[MUNGE]`` is a :class:`MungeVerifier`, or None when disabled."""
    settings = app[SETTINGS].auth.munge
    verifier = None
    if settings.enabled:
        scopes = await asyncio.to_thread(lambda: frozenset(load_scope_rules().scopes))
        verifier = MungeVerifier.from_settings(settings, known_scopes=scopes)
        log.info(
            "MUNGE authentication enabled: socket %s, max_age %d s",
            settings.socket or "(unmunge's default)",
            settings.max_age,
        )
    app[MUNGE] = verifier
    yield
