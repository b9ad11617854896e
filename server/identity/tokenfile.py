"""The tokens file: one ``[[token]]`` table per entry, parsed and checked as a whole; and written.

Parsing reports every problem at once (file, entry, key, what is wrong) in one
:class:`~slurmgate.server.errors.ConfigError`; nothing half-checked is ever returned. Writing
renders entries in a fixed layout, so `slurmgate token` rewrites produce stable diffs.
The format is documented key by key in docs/authentication.md.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from slurmgate.server.errors import ConfigError
from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.secret import DIGEST_PATTERN, NAME_PATTERN

__all__ = [
    "USER_PATTERN",
    "Network",
    "TokenEntry",
    "compile_accounts",
    "parse_network",
    "parse_tokens",
    "render_tokens",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Status = Literal["active", "expired", "revoked"]

#: Slurm user names: POSIX-portable names (plus '@' and '$'); nothing that could break a header.
USER_PATTERN = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@$-]{0,127}", re.ASCII)

_KEYS = {
    "name", "user", "scopes", "accounts", "networks", "expires", "created", "revoked", "digest",
    "comment", "rate", "burst",
}  # fmt: skip
_HEADER = """\
# slurmgate tokens, managed with `slurmgate token create | list | revoke`
# (format: docs/authentication.md). Each entry keeps the sha256 of its secret, never the secret.
# Revoked entries stay for audit. The token commands rewrite this file: comments other than the
# entries' `comment` keys are not kept.
"""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One ``[[token]]`` table, checked; ``identity`` is what a request carrying it acts as."""

    name: str
    user: str
    scopes: tuple[str, ...]
    accounts: tuple[re.Pattern[str], ...]
    networks: tuple[Network, ...]
    created: datetime
    #: sha256 of the secret: never shown, not even in a repr (docs/authentication.md)
    digest: str = field(repr=False)
    expires: datetime | None = None
    revoked: datetime | None = None
    comment: str = ""
    #: the token's own rate limit (requests per second; inf: none) and burst; None: the
    #: configuration's default (limits.rate, limits.burst)
    rate: float | None = None
    burst: int | None = None
    identity: Identity = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        identity = Identity(
            user=self.user,
            method="token",
            name=self.name,
            scopes=frozenset(self.scopes),
            accounts=self.accounts,
            rate=self.rate,
            burst=self.burst,
        )
        object.__setattr__(self, "identity", identity)

    def status(self, now: datetime) -> Status:
        """``revoked`` once its revocation time has come, else ``expired`` past ``expires``."""
        if self.revoked is not None and self.revoked <= now:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        """Whether a request from ``address`` may use this entry (no networks: from anywhere)."""
        if not self.networks:
            return True
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def compile_accounts(patterns: Iterable[str]) -> tuple[tuple[re.Pattern[str], ...], list[str]]:
    """Compile account patterns; returns the patterns and one message per bad one."""
    compiled: list[re.Pattern[str]] = []
    problems: list[str] = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            problems.append(f"accounts[{index}] {pattern!r} is not a regular expression: {error}")
    return tuple(compiled), problems


def parse_network(text: str) -> Network:
    """A CIDR network (``10.0.0.0/8``; a bare address is a /32 or /128); ValueError if not."""
    return ipaddress.ip_network(text, strict=True)


class _Entry:
    """Checks one table, collecting problems instead of stopping at the first."""

    def __init__(self, table: Mapping[str, object], where: str, problems: list[str]) -> None:
        self.table = table
        self.where = where
        self.problems = problems

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where}: {key}: {message}")

    def text(self, key: str, pattern: re.Pattern[str] | None, *, required: bool = True) -> str:
        value = self.table.get(key)
        if value is None:
            if required:
                self.problem(key, "missing")
            return ""
        if not isinstance(value, str):
            self.problem(key, "must be a string")
            return ""
        if pattern is not None and pattern.fullmatch(value) is None:
            self.problem(key, f"{value!r} does not match {pattern.pattern}")
            return ""
        return value

    def strings(self, key: str, *, required: bool = True) -> list[str]:
        value = self.table.get(key)
        if value is None:
            if required:
                self.problem(key, "missing (use [] for none)")
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(key, "must be a list of strings")
            return []
        return [str(item) for item in value]

    def rate(self) -> float | None:
        value = self.table.get("rate")
        if value is None:
            return None
        # bool is an int to Python, not a number to anyone writing the file
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.problem("rate", "must be a number of requests per second above 0 (inf: no limit)")
            return None
        return float(value)

    def burst(self) -> int | None:
        value = self.table.get("burst")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
            self.problem("burst", "must be an integer from 1 to 1048576")
            return None
        return value

    def when(self, key: str, *, required: bool) -> datetime | None:
        value = self.table.get(key)
        if value is None:
            if required:
                self.problem(key, "missing")
            return None
        if not isinstance(value, datetime) or value.utcoffset() is None:
            self.problem(key, "must be a TOML date-time with an offset, e.g. 2026-01-31T12:00:00Z")
            return None
        return value.astimezone(UTC)


def _entry(
    table: Mapping[str, object], where: str, known_scopes: Collection[str] | None
) -> tuple[TokenEntry | None, list[str]]:
    problems: list[str] = []
    check = _Entry(table, where, problems)
    for key in sorted(set(table) - _KEYS):
        check.problem(key, "unknown key")
    name = check.text("name", NAME_PATTERN)
    user = check.text("user", USER_PATTERN)
    digest = check.text("digest", DIGEST_PATTERN)
    comment = check.text("comment", None, required=False)
    scopes = check.strings("scopes")
    if known_scopes is not None:
        for scope in scopes:
            if scope not in known_scopes:
                check.problem("scopes", f"unknown scope {scope!r} (see policies/scopes.toml)")
    accounts, bad_patterns = compile_accounts(check.strings("accounts"))
    for message in bad_patterns:
        check.problem("accounts", message)
    networks: list[Network] = []
    for text in check.strings("networks", required=False):
        try:
            networks.append(parse_network(text))
        except ValueError as error:
            check.problem("networks", f"{text!r} is not a CIDR network: {error}")
    created = check.when("created", required=True)
    expires = check.when("expires", required=False)
    revoked = check.when("revoked", required=False)
    rate = check.rate()
    burst = check.burst()
    if problems or created is None:
        return None, problems
    entry = TokenEntry(
        name=name,
        user=user,
        scopes=tuple(dict.fromkeys(scopes)),
        accounts=accounts,
        networks=tuple(networks),
        created=created,
        digest=digest,
        expires=expires,
        revoked=revoked,
        comment=comment,
        rate=rate,
        burst=burst,
    )
    return entry, problems


def parse_tokens(
    text: str, *, origin: str, known_scopes: Collection[str] | None = None
) -> tuple[TokenEntry, ...]:
    """Parse a tokens file's text; :class:`ConfigError` lists every problem, each with ``origin``.

    ``known_scopes``, when given, are the only scope names an entry may carry.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{origin}: not valid TOML: {error}"]) from None
    problems = [f"{origin}: {key}: unknown top-level key" for key in sorted(set(data) - {"token"})]
    tables = data.get("token", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError([*problems, f"{origin}: token: must be an array of tables [[token]]"])
    entries: list[TokenEntry] = []
    first_seen: dict[str, int] = {}
    for index, table in enumerate(tables, start=1):
        label = table.get("name")
        where = f"{origin}: [[token]] #{index}" + (f" {label!r}" if isinstance(label, str) else "")
        entry, entry_problems = _entry(table, where, known_scopes)
        problems += entry_problems
        if isinstance(label, str):
            if label in first_seen:
                problems.append(
                    f"{where}: name: {label!r} is already the name of [[token]] "
                    f"#{first_seen[label]}"
                )
            first_seen.setdefault(label, index)
        if entry is not None:
            entries.append(entry)
    if problems:
        raise ConfigError(problems)
    return tuple(entries)


def _string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(_string(value) for value in values) + "]"


def _number(value: float) -> str:
    """A TOML float (``inf`` for no limit)."""
    return "inf" if value == float("inf") else repr(float(value))


def _time(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render_tokens(entries: Iterable[TokenEntry]) -> str:
    """The tokens file holding ``entries``, in order; :func:`parse_tokens` reads it back."""
    blocks = [_HEADER]
    for entry in entries:
        lines = [
            "[[token]]",
            f"name = {_string(entry.name)}",
            f"user = {_string(entry.user)}",
            f"scopes = {_strings(entry.scopes)}",
            f"accounts = {_strings(pattern.pattern for pattern in entry.accounts)}",
            f"networks = {_strings(str(network) for network in entry.networks)}",
            f"created = {_time(entry.created)}",
        ]
        if entry.expires is not None:
            lines.append(f"expires = {_time(entry.expires)}")
        if entry.revoked is not None:
            lines.append(f"revoked = {_time(entry.revoked)}")
        if entry.comment:
            lines.append(f"comment = {_string(entry.comment)}")
        if entry.rate is not None:
            lines.append(f"rate = {_number(entry.rate)}")
        if entry.burst is not None:
            lines.append(f"burst = {entry.burst}")
        lines.append(f"digest = {_string(entry.digest)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
