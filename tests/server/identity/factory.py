"""Token entries and tokens files for tests, made the way `slurmgate token create` makes them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from slurmgate.server.identity.secret import digest, mint
from slurmgate.server.identity.tokenfile import TokenEntry, parse_network, render_tokens

__all__ = ["NOW", "make_entry", "write_tokens"]

#: A fixed "now" for tests that inject a clock.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_entry(
    name: str,
    user: str = "alice",
    *,
    scopes: tuple[str, ...] = ("slurm:read",),
    accounts: tuple[str, ...] = (),
    networks: tuple[str, ...] = (),
    expires: datetime | None = None,
    revoked: datetime | None = None,
    created: datetime = NOW,
) -> tuple[str, TokenEntry]:
    """A fresh secret and the entry that accepts it."""
    secret = mint(name, user, now=created, expires=expires)
    entry = TokenEntry(
        name=name,
        user=user,
        scopes=scopes,
        accounts=tuple(re.compile(pattern) for pattern in accounts),
        networks=tuple(parse_network(network) for network in networks),
        created=created,
        digest=digest(secret),
        expires=expires,
        revoked=revoked,
    )
    return secret, entry


def write_tokens(path: Path, *entries: TokenEntry) -> None:
    """Replace ``path`` (by rename, as the token commands do) with ``entries``."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(render_tokens(entries), encoding="utf-8")
    temporary.replace(path)
