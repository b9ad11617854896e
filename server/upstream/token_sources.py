"""Where the SlurmUser token comes from: minted with Slurm's key, printed by a command, or a file.

Each source turns its failures into :class:`TokenError`, whose message names the source and the
problem and never contains a token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import jwt

from slurmgate.server.config import SlurmUserTokenSettings
from slurmgate.server.upstream.process import read_bounded, reap, spawn

__all__ = [
    "CommandSource",
    "FileSource",
    "JwtKeySource",
    "Token",
    "TokenError",
    "TokenSource",
    "make_source",
    "token_from_text",
]

log = logging.getLogger("slurmgate.upstream")

#: Largest token file or command output read; a token is a few hundred bytes.
MAX_TOKEN_TEXT = 64 * 1024
#: How much of a failing command's stderr goes to the log.
STDERR_BYTES = 2048
#: Latest ``exp`` accepted, in seconds from now (ten years): a token said to live longer is
#: broken, and would never be renewed.
MAX_EXPIRY = 10 * 365 * 24 * 3600
#: Latest ``iat`` accepted, in seconds from now: clocks of different hosts drift, not by hours.
MAX_ISSUED_AHEAD = 3600

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

Clock = Callable[[], float]


class TokenError(Exception):
    """A source could not give a usable token; the message is for the log."""


@dataclass(frozen=True, slots=True)
class Token:
    """A token and the times that matter for renewing it (seconds since the epoch)."""

    value: str = field(repr=False)
    issued_at: float
    expires_at: float
    #: its ``sun`` claim, when it has one
    user: str | None


class TokenSource(Protocol):
    """Gives tokens on demand; :class:`~slurmgate.server.upstream.token.SlurmUserToken` calls it."""

    #: how the log names the source, e.g. "jwt_key /etc/slurm/jwt_hs256.key"
    name: str
    #: seconds between calls to :meth:`changed`, or None when the source does not change by itself
    poll_interval: float | None

    async def fetch(self) -> Token:
        """A new token, or :class:`TokenError`."""
        ...

    async def changed(self) -> bool:
        """Whether the source changed since the last :meth:`fetch` (worth fetching again)."""
        ...


def token_from_text(text: str, *, origin: str, lifespan: int, now: float) -> Token:
    """The token in ``text`` (a bare JWT or ``SLURM_JWT=<jwt>``, as ``scontrol token`` prints it).

    Its claims are read without checking the signature (slurmrestd checks it): ``exp`` says when
    to renew; without ``exp`` it is taken to live ``lifespan`` seconds from ``iat`` (or ``now``).
    ``iat`` and ``exp`` must be whole seconds since the epoch, ``iat`` at most
    :data:`MAX_ISSUED_AHEAD` ahead of ``now``, ``exp`` after ``iat`` and at most
    :data:`MAX_EXPIRY` ahead of ``now``.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise TokenError(f"{origin}: expected one line with a token, found {len(lines)} lines")
    value = lines[0].removeprefix("SLURM_JWT=")
    if not _JWT_SHAPE.fullmatch(value):
        raise TokenError(f"{origin}: the line is not a JWT (or SLURM_JWT=<JWT>)")
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise TokenError(f"{origin}: not a readable JWT: {error}") from None
    issued_at = _seconds(claims.get("iat"), origin=origin, claim="iat")
    if issued_at is None:
        issued_at = int(now)
    elif issued_at > now + MAX_ISSUED_AHEAD:
        raise TokenError(f"{origin}: claim 'iat' is more than {MAX_ISSUED_AHEAD} s in the future")
    expires_at = _seconds(claims.get("exp"), origin=origin, claim="exp")
    if expires_at is None:
        expires_at = issued_at + lifespan
    elif expires_at <= issued_at:
        raise TokenError(f"{origin}: claim 'exp' is not after 'iat'")
    if expires_at > now + MAX_EXPIRY:
        raise TokenError(f"{origin}: claim 'exp' is more than ten years in the future")
    user = claims.get("sun")
    return Token(value, issued_at, expires_at, user if isinstance(user, str) else None)


def _seconds(value: object, *, origin: str, claim: str) -> int | None:
    """A time claim: whole seconds since the epoch, or None when absent.

    Only JSON integers: a float could be infinity (``1e400``) or NaN, and Python's int has no
    upper bound, so callers compare before anything converts it to float.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenError(f"{origin}: claim {claim!r} is not a whole number of seconds")
    if value < 0:
        raise TokenError(f"{origin}: claim {claim!r} is before 1970")
    return value


class JwtKeySource:
    """Mints HS256 tokens with Slurm's own key (``AuthAltParameters=jwt_key=...``).

    The key file is read for every token, so a rotated key is used from the next renewal on.
    """

    poll_interval: float | None = None

    def __init__(
        self, key_file: Path, *, user: str, lifespan: int, clock: Clock = time.time
    ) -> None:
        self.name = f"jwt_key {key_file}"
        self._key_file = key_file
        self._user = user
        self._lifespan = lifespan
        self._clock = clock

    async def fetch(self) -> Token:
        """A token for the configured user, valid for ``lifespan`` seconds from now."""
        try:
            key = await asyncio.to_thread(self._key_file.read_bytes)
        except OSError as error:
            raise TokenError(f"{self.name}: cannot read the key: {error.strerror}") from None
        if not key:
            raise TokenError(f"{self.name}: the key file is empty")
        now = int(self._clock())
        claims = {"sun": self._user, "iat": now, "exp": now + self._lifespan}
        try:
            value = jwt.encode(claims, key, algorithm="HS256")
        except jwt.PyJWTError as error:
            raise TokenError(f"{self.name}: cannot sign with the key: {error}") from None
        return Token(value, now, now + self._lifespan, self._user)

    async def changed(self) -> bool:
        """Never: a key file change takes effect at the next renewal."""
        return False


class CommandSource:
    """Runs a command that prints a token, such as ``scontrol token lifespan=600``.

    The command runs with a clean environment (PATH and LANG), at most ``timeout`` seconds, and
    its stdout may not exceed :data:`MAX_TOKEN_TEXT`.
    """

    poll_interval: float | None = None

    def __init__(
        self, command: Sequence[str], *, lifespan: int, timeout: float, clock: Clock = time.time
    ) -> None:
        self.name = f"command {command[0]}"
        self._command = tuple(command)
        self._lifespan = lifespan
        self._timeout = timeout
        self._clock = clock

    async def fetch(self) -> Token:
        """Run the command and read the token from its stdout."""
        try:
            process = await spawn(self._command, stdin=asyncio.subprocess.DEVNULL)
        except OSError as error:
            raise TokenError(f"{self.name}: cannot start: {error.strerror}") from None
        output, errors = bytearray(), bytearray()
        assert process.stdout is not None
        assert process.stderr is not None
        reading = asyncio.create_task(read_bounded(process.stdout, output, MAX_TOKEN_TEXT))
        erring = asyncio.create_task(read_bounded(process.stderr, errors, STDERR_BYTES))
        ended = False
        try:
            async with asyncio.timeout(self._timeout):
                # Shielded: on a timeout the readers go on draining the pipes of the killed process.
                too_long = await asyncio.shield(reading)
                await asyncio.shield(erring)
                returncode = await process.wait()
                ended = True
        except TimeoutError:
            raise TokenError(f"{self.name}: still running after {self._timeout:g} s") from None
        finally:
            if not ended:
                await asyncio.shield(reap(process, readers=[reading, erring]))
            reading.cancel()
            erring.cancel()
        stderr = errors.decode("utf-8", "replace").strip()
        if returncode != 0:
            raise TokenError(f"{self.name}: exited {returncode}: {stderr or '(no stderr)'}")
        if too_long:
            raise TokenError(f"{self.name}: printed more than {MAX_TOKEN_TEXT} bytes")
        return token_from_text(
            output.decode("utf-8", "replace"),
            origin=self.name,
            lifespan=self._lifespan,
            now=self._clock(),
        )

    async def changed(self) -> bool:
        """Never: the command runs when renewal is due."""
        return False


class FileSource:
    """Reads a token file that something else keeps fresh; polls it for changes.

    A change is any difference in inode, size or modification time, so both rewriting the file in
    place and renaming a new one over it are seen.
    """

    def __init__(
        self, path: Path, *, lifespan: int, poll_interval: float, clock: Clock = time.time
    ) -> None:
        self.name = f"file {path}"
        self.poll_interval: float | None = poll_interval
        self._path = path
        self._lifespan = lifespan
        self._clock = clock
        #: (inode, size, mtime) when last read; only fetch() sets it, changed() compares
        self._seen: tuple[int, int, int] | None = None
        self._warned_mode = False

    async def fetch(self) -> Token:
        """Read the token from the file."""
        try:
            seen, mode, data = await asyncio.to_thread(self._read)
        except OSError as error:
            raise TokenError(f"{self.name}: cannot read: {error.strerror}") from None
        self._seen = seen
        if mode & stat.S_IROTH and not self._warned_mode:
            self._warned_mode = True
            log.warning("%s is readable by every user: it grants SlurmUser's rights", self.name)
        if len(data) > MAX_TOKEN_TEXT:
            raise TokenError(f"{self.name}: larger than {MAX_TOKEN_TEXT} bytes")
        return token_from_text(
            data.decode("utf-8", "replace"),
            origin=self.name,
            lifespan=self._lifespan,
            now=self._clock(),
        )

    async def changed(self) -> bool:
        """Whether the file differs from when it was last read (a vanished file differs too)."""
        return await asyncio.to_thread(self._signature) != self._seen

    def _read(self) -> tuple[tuple[int, int, int], int, bytes]:
        # Stat the open file, not the path: what was read is what was stat'ed.
        with self._path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read(MAX_TOKEN_TEXT + 1)
        return (info.st_ino, info.st_size, info.st_mtime_ns), info.st_mode, data

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            info = self._path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns


def make_source(settings: SlurmUserTokenSettings, *, clock: Clock = time.time) -> TokenSource:
    """The source ``settings.source`` names."""
    if settings.source == "jwt_key":
        assert settings.jwt_key is not None  # SlurmUserTokenSettings checks it
        return JwtKeySource(
            settings.jwt_key, user=settings.user, lifespan=settings.lifespan, clock=clock
        )
    if settings.source == "command":
        return CommandSource(
            settings.command,
            lifespan=settings.lifespan,
            timeout=settings.command_timeout,
            clock=clock,
        )
    assert settings.file is not None  # SlurmUserTokenSettings checks it
    return FileSource(
        settings.file,
        lifespan=settings.lifespan,
        poll_interval=settings.poll_interval,
        clock=clock,
    )
