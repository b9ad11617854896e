"""What ``slurmgate token show NAME`` prints: one token's entry and its effective permissions.

Pure: it takes a checked entry and the generated routing tables and returns text or JSON, so the
command in ``token_cli.py`` only finds the entry. An operation is allowed when the token holds its
scope (what ``server/pipeline/authorize.py`` checks first); a note says where more is checked on
top: account patterns on mutating operations that name accounts, group and network requirements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from slurmgate.policies.requirements import Requirement, applicable
from slurmgate.policies.routing import Route
from slurmgate.server.identity.tokenfile import TokenEntry

__all__ = ["Permissions", "permissions", "requirement_notes", "show_json", "show_text"]

#: Extra conditions the gateway puts on a route for this token, one line each ("requires ...").
Notes = Callable[[Route], Sequence[str]]
ACCOUNT_NOTE = "account patterns apply"


@dataclass(frozen=True, slots=True)
class Permissions:
    """One API version's operations for one token, grouped by scope (sorted)."""

    version: str
    allowed: Mapping[str, tuple[Route, ...]]
    refused: Mapping[str, tuple[Route, ...]]


def _no_notes(route: Route) -> Sequence[str]:
    del route
    return ()


def requirement_notes(requirements: Sequence[Requirement]) -> Notes:
    """Notes naming the groups and networks the configuration's rules require for a route."""

    def notes(route: Route) -> Sequence[str]:
        found = []
        for rule in applicable(requirements, route):
            if rule.groups:
                found.append(f"requires group {' or '.join(rule.groups)} ({rule.origin})")
            if rule.networks:
                networks = ", ".join(str(network) for network in rule.networks)
                found.append(f"requires network {networks} ({rule.origin})")
        return found

    return notes


def permissions(scopes: Iterable[str], version: str, routes: Sequence[Route]) -> Permissions:
    """Split ``routes`` into what a token with ``scopes`` may call and what not, by scope."""
    held = frozenset(scopes)
    allowed: dict[str, list[Route]] = {}
    refused: dict[str, list[Route]] = {}
    for route in routes:
        (allowed if route.scope in held else refused).setdefault(route.scope, []).append(route)

    def grouped(groups: dict[str, list[Route]]) -> dict[str, tuple[Route, ...]]:
        return {
            scope: tuple(sorted(groups[scope], key=lambda r: (r.path, r.method)))
            for scope in sorted(groups)
        }

    return Permissions(version, grouped(allowed), grouped(refused))


def _route_notes(entry: TokenEntry, route: Route, notes: Notes) -> list[str]:
    found = [ACCOUNT_NOTE] if entry.accounts and route.mutating and route.accounts else []
    return found + list(notes(route))


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _status_line(entry: TokenEntry, now: datetime) -> str:
    status = entry.status(now)
    if status == "active":
        return status
    return f"{status}: the gateway refuses it; below is what its scopes would allow"


def show_text(
    entry: TokenEntry,
    tables: Sequence[Permissions],
    *,
    now: datetime,
    notes: Notes = _no_notes,
) -> str:
    """The entry (never its digest) and, per version, allowed then refused operations by scope."""
    accounts = ", ".join(p.pattern for p in entry.accounts)
    fields = [
        ("token", entry.name),
        ("user", entry.user),
        ("status", _status_line(entry, now)),
        ("created", _when(entry.created) or ""),
        ("expires", _when(entry.expires) or "never"),
        ("revoked", _when(entry.revoked) or "-"),
        ("networks", ", ".join(str(n) for n in entry.networks) or "* (from anywhere)"),
        ("accounts", f"{accounts} (full match)" if accounts else "* (no restriction by account)"),
        ("scopes", ", ".join(entry.scopes) or "- (none: allows nothing)"),
    ]
    if entry.comment:
        fields.append(("comment", entry.comment))
    lines = [f"{key + ':':<10}{value}" for key, value in fields]
    for table in tables:
        counts = [sum(len(r) for r in side.values()) for side in (table.allowed, table.refused)]
        lines += ["", f"{table.version}: {counts[0]} operations allowed, {counts[1]} refused"]
        for title, side in (("allowed", table.allowed), ("refused", table.refused)):
            lines.append(f"  {title}:" + ("" if side else " none"))
            for scope, routes in side.items():
                lines.append(f"    {scope}")
                width = max(len(route.path) for route in routes)
                for route in routes:
                    found = _route_notes(entry, route, notes) if title == "allowed" else []
                    suffix = f"  ({'; '.join(found)})" if found else ""
                    lines.append(f"      {route.method:<7}{route.path:<{width}}{suffix}".rstrip())
    return "\n".join(lines) + "\n"


def show_json(
    entry: TokenEntry,
    tables: Sequence[Permissions],
    *,
    now: datetime,
    notes: Notes = _no_notes,
) -> dict[str, object]:
    """The same as :func:`show_text`, as one JSON-able object."""

    def operations(side: Mapping[str, tuple[Route, ...]], allowed: bool) -> list[object]:
        return [
            {
                "method": route.method,
                "path": route.path,
                "scope": scope,
                "operation": route.operation_id,
                "notes": _route_notes(entry, route, notes) if allowed else [],
            }
            for scope, routes in side.items()
            for route in routes
        ]

    return {
        "name": entry.name,
        "user": entry.user,
        "status": entry.status(now),
        "created": _when(entry.created),
        "expires": _when(entry.expires),
        "revoked": _when(entry.revoked),
        "networks": [str(network) for network in entry.networks],
        "accounts": [pattern.pattern for pattern in entry.accounts],
        "scopes": list(entry.scopes),
        "comment": entry.comment,
        "versions": {
            table.version: {
                "allowed": operations(table.allowed, True),
                "refused": operations(table.refused, False),
            }
            for table in tables
        },
    }
