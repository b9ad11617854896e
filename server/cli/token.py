"""``slurmgate token create | list | show | revoke``: manage the tokens file the gateway reads.

``create`` prints the new secret once, on stdout and nothing else there; the file keeps only its
digest. Every change happens under an exclusive lock on ``<tokens file>.lock`` and replaces the
file atomically (temporary file, fsync, rename, mode 0600, owner kept), so two administrators
cannot lose each other's edits and the gateway never reads half a file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from slurmgate.generated import ROUTES
from slurmgate.policies.rules import load_scope_rules
from slurmgate.server.cli.token_show import (
    permissions,
    requirement_notes,
    show_json,
    show_text,
)
from slurmgate.server.config import load_settings
from slurmgate.server.errors import ConfigError
from slurmgate.server.identity import secret as secrets_
from slurmgate.server.identity.tokenfile import (
    USER_PATTERN,
    Network,
    TokenEntry,
    compile_accounts,
    parse_network,
    parse_tokens,
    render_tokens,
)

__all__ = ["parse_expires", "register"]

Command = Callable[[argparse.Namespace, TextIO], int]

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LIST_COLUMNS = ("NAME", "USER", "STATUS", "EXPIRES", "SCOPES", "ACCOUNTS", "NETWORKS")


class _Failed(Exception):
    """A command cannot go on: ``problems`` go to stderr, ``status`` is the exit status."""

    def __init__(self, problems: list[str], status: int = 1) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.status = status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token`` and its actions to the ``slurmgate`` parser."""
    token = subparsers.add_parser(
        "token",
        help="create, list and revoke the gateway's bearer tokens",
        description="Manage the tokens file (auth.tokens_file). See docs/authentication.md.",
    )
    actions = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="create a token and print its secret (once)",
        description="Create a token entry and print its secret on stdout. The secret is not "
        "stored anywhere: only its sha256 is written to the tokens file.",
    )
    _file_options(create)
    create.add_argument("--user", required=True, help="the Slurm user the token acts as")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        metavar="SCOPE",
        help="a scope from policies/scopes.toml (repeat for several)",
    )
    create.add_argument(
        "--account",
        dest="accounts",
        action="append",
        default=[],
        metavar="REGEX",
        help="Slurm accounts the token may touch, a full-match regular expression (repeat; "
        "none = no restriction)",
    )
    create.add_argument(
        "--expires",
        metavar="WHEN",
        help="a duration (90s, 15m, 12h, 30d, 2w) or an ISO 8601 date-time with offset "
        "(default: never)",
    )
    create.add_argument(
        "--network",
        dest="networks",
        action="append",
        default=[],
        metavar="CIDR",
        help="source networks the token may be used from (repeat; none = anywhere)",
    )
    create.add_argument(
        "--name", dest="token_name", help="unique name, [A-Za-z0-9._-] (default: USER-<random>)"
    )
    create.add_argument("--comment", default="", help="free text kept with the entry")
    create.add_argument(
        "--rate",
        metavar="PER_SECOND",
        help="the token's own rate limit in requests per second, e.g. 5 or 0.5; inf = no limit "
        "(default: the configuration's limits.rate)",
    )
    create.add_argument(
        "--burst",
        metavar="N",
        help="requests the token may make at once (default: limits.burst, or one second's "
        "worth of --rate)",
    )
    create.set_defaults(command=_reporting("create", _create))

    listing = actions.add_parser(
        "list", help="list tokens and their status", description="List every token entry."
    )
    _file_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(command=_reporting("list", _list))

    show = actions.add_parser(
        "show",
        help="show a token and the operations it may call",
        description="Show a token's entry (never its digest) and, per API version, the "
        "operations its scopes allow and refuse, grouped by scope.",
    )
    _file_options(show)
    show.add_argument("token_name", metavar="NAME", help="the token's name")
    show.add_argument(
        "--version",
        dest="api_version",
        metavar="v0.0.XX",
        help="only this API version (default: every generated version)",
    )
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(command=_reporting("show", _show))

    revoke = actions.add_parser(
        "revoke",
        help="revoke a token (the entry stays, for audit)",
        description="Mark a token revoked from now on. A running gateway notices within about "
        "a second (or at once on SIGHUP).",
    )
    _file_options(revoke)
    revoke.add_argument("token_name", metavar="NAME", help="the token's name")
    revoke.set_defaults(command=_reporting("revoke", _revoke))


def _file_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tokens-file", type=Path, metavar="PATH", help="the tokens file")
    where.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="read auth.tokens_file from this configuration (default: slurmgate.toml)",
    )


def parse_expires(text: str, now: datetime) -> datetime:
    """``30d``-style durations from ``now``, or an ISO 8601 date-time with offset; ValueError."""
    duration = _DURATION.fullmatch(text)
    if duration is not None:
        return now + timedelta(seconds=int(duration.group(1)) * _UNITS[duration.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--expires {text!r}: expected a duration such as 30d or a date-time such as "
            "2027-01-31T00:00:00Z"
        ) from None
    if when.utcoffset() is None:
        raise ValueError(f"--expires {text!r}: the date-time needs an offset (Z or +01:00)")
    if when <= now:
        raise ValueError(f"--expires {text!r} is in the past")
    return when.astimezone(UTC)


def _reporting(action: str, body: Command) -> Command:
    """``body`` with its failures turned into messages on stderr and an exit status."""

    def command(args: argparse.Namespace, out: TextIO) -> int:
        try:
            return body(args, out)
        except ConfigError as error:
            problems, status = error.problems, 1
        except _Failed as failure:
            problems, status = failure.problems, failure.status
        except OSError as error:
            problems, status = [f"{error.filename or 'tokens file'}: {error.strerror or error}"], 1
        for problem in problems:
            print(f"slurmgate token {action}: {problem}", file=sys.stderr)
        return status

    return command


def _tokens_path(args: argparse.Namespace) -> Path:
    if args.tokens_file is not None:
        path: Path = args.tokens_file
        return path
    return load_settings(args.config or Path("slurmgate.toml")).auth.tokens_file


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _create(args: argparse.Namespace, out: TextIO) -> int:
    now = _now()
    problems: list[str] = []
    if USER_PATTERN.fullmatch(args.user) is None:
        problems.append(f"--user {args.user!r} is not a user name ({USER_PATTERN.pattern})")
    if args.token_name is not None and secrets_.NAME_PATTERN.fullmatch(args.token_name) is None:
        problems.append(f"--name {args.token_name!r} must match {secrets_.NAME_PATTERN.pattern}")
    known = load_scope_rules().scopes
    problems += [
        f"--scope {scope!r} is not a scope; known: {', '.join(sorted(known))}"
        for scope in args.scopes
        if scope not in known
    ]
    accounts, bad = compile_accounts(args.accounts)
    problems += [f"--account: {message}" for message in bad]
    networks: list[Network] = []
    for text in args.networks:
        try:
            networks.append(parse_network(text))
        except ValueError as error:
            problems.append(f"--network {text!r}: {error}")
    rate, burst = _limits(args.rate, args.burst, problems)
    expires = None
    if args.expires is not None:
        try:
            expires = parse_expires(args.expires, now)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise _Failed(problems, status=2)
    path = _tokens_path(args)
    with _locked(path):
        entries = _read_for_edit(path)
        taken = {entry.name for entry in entries}
        name = args.token_name
        if name is None:
            name = _default_name(args.user)
            while name in taken:
                name = _default_name(args.user)
        elif name in taken:
            raise _Failed([f"{path}: a token named {name!r} exists already"])
        secret = secrets_.mint(name, args.user, now=now, expires=expires)
        entry = TokenEntry(
            name=name,
            user=args.user,
            scopes=tuple(dict.fromkeys(args.scopes)),
            accounts=accounts,
            networks=tuple(networks),
            created=now,
            digest=secrets_.digest(secret),
            expires=expires,
            comment=args.comment,
            rate=rate,
            burst=burst,
        )
        _write(path, render_tokens([*entries, entry]))
    # Only once the entry is safely on disk: a secret printed for an entry that was not written
    # would be a secret that never works.
    out.write(secret + "\n")
    out.flush()
    until = _when(entry.expires) if entry.expires else "never"
    print(f"created token {name!r} for {args.user!r} (expires: {until}) in {path}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, out: TextIO) -> int:
    path = _tokens_path(args)
    entries = _read_for_edit(path) if path.exists() else ()
    now = datetime.now(UTC)
    if args.json:
        for entry in entries:
            out.write(json.dumps(_as_json(entry, now)) + "\n")
        return 0
    rows = [_LIST_COLUMNS]
    for entry in entries:
        rows.append(
            (
                entry.name,
                entry.user,
                entry.status(now),
                _when(entry.expires) if entry.expires else "never",
                ",".join(entry.scopes),
                ",".join(p.pattern for p in entry.accounts) or "*",
                ",".join(str(n) for n in entry.networks) or "*",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_LIST_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    if args.api_version is not None and args.api_version not in ROUTES:
        known = ", ".join(ROUTES)
        raise _Failed([f"unknown API version {args.api_version!r}; supported: {known}"], status=2)
    if args.tokens_file is not None:
        path: Path = args.tokens_file
        notes = requirement_notes(())
    else:
        # With the configuration, its group and network rules are shown too.
        settings = load_settings(args.config or Path("slurmgate.toml"))
        path = settings.auth.tokens_file
        notes = requirement_notes(settings.authorization.requirements())
    entry = next((e for e in _read_for_edit(path) if e.name == args.token_name), None)
    if entry is None:
        raise _Failed(
            [f"{path}: no token named {args.token_name!r} (`slurmgate token list` shows them)"],
            status=2,
        )
    versions = [args.api_version] if args.api_version else list(ROUTES)
    tables = [permissions(entry.scopes, version, ROUTES[version]) for version in versions]
    now = datetime.now(UTC)
    if args.json:
        out.write(json.dumps(show_json(entry, tables, now=now, notes=notes)) + "\n")
    else:
        out.write(show_text(entry, tables, now=now, notes=notes))
    return 0


def _revoke(args: argparse.Namespace, out: TextIO) -> int:
    del out  # revoke prints nothing on stdout
    path = _tokens_path(args)
    now = _now()
    with _locked(path):
        entries = list(_read_for_edit(path))
        index = next((i for i, e in enumerate(entries) if e.name == args.token_name), None)
        if index is None:
            raise _Failed([f"{path}: no token named {args.token_name!r}"])
        entry = entries[index]
        if entry.revoked is not None and entry.revoked <= now:
            print(f"token {entry.name!r} was revoked at {_when(entry.revoked)}", file=sys.stderr)
            return 0
        entries[index] = dataclasses.replace(entry, revoked=now)
        _write(path, render_tokens(entries))
    print(f"revoked token {entry.name!r} (user {entry.user!r}) in {path}", file=sys.stderr)
    return 0


def _limits(
    rate_text: str | None, burst_text: str | None, problems: list[str]
) -> tuple[float | None, int | None]:
    """``--rate`` and ``--burst`` checked as the tokens file checks ``rate`` and ``burst``."""
    rate = burst = None
    if rate_text is not None:
        try:
            rate = float(rate_text)
        except ValueError:
            rate = None
        if rate is None or not rate > 0:
            problems.append(f"--rate {rate_text!r}: requests per second above 0, or inf")
            rate = None
    if burst_text is not None:
        try:
            burst = int(burst_text)
        except ValueError:
            burst = None
        if burst is None or not 1 <= burst <= 1 << 20:
            problems.append(f"--burst {burst_text!r}: an integer from 1 to 1048576")
            burst = None
    return rate, burst


def _default_name(user: str) -> str:
    """``<user>-<6 hex digits>``, the user's name reduced to the characters names may have."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', user)[:50]}-{secrets.token_hex(3)}"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _as_json(entry: TokenEntry, now: datetime) -> dict[str, object]:
    return {
        "name": entry.name,
        "user": entry.user,
        "status": entry.status(now),
        "scopes": list(entry.scopes),
        "accounts": [pattern.pattern for pattern in entry.accounts],
        "networks": [str(network) for network in entry.networks],
        "created": _when(entry.created),
        "expires": _when(entry.expires) if entry.expires else None,
        "revoked": _when(entry.revoked) if entry.revoked else None,
        "comment": entry.comment,
        # JSON has no infinity: a token without limit says "inf", as its entry does
        "rate": entry.rate if entry.rate is None or math.isfinite(entry.rate) else "inf",
        "burst": entry.burst,
    }


def _read_for_edit(path: Path) -> tuple[TokenEntry, ...]:
    """The entries of ``path`` (none if it does not exist yet); a broken file is not edited."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as error:
        raise _Failed([f"{path}: cannot read: {error}"]) from None
    # Scopes are not checked here: an entry whose scope a policy update removed can still be
    # listed and revoked (the gateway itself refuses to load it).
    return parse_tokens(text, origin=str(path))


def _acquire(fd: int) -> None:
    """Block until this process holds the exclusive lock (a seam for the concurrency test)."""
    fcntl.flock(fd, fcntl.LOCK_EX)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively: the tokens file itself is replaced, so cannot be locked."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise _Failed([f"{lock}: cannot open the lock file: {error.strerror}"]) from None
    try:
        _acquire(fd)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``: mode 0600, the old file's owner and group."""
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(file.fileno(), old.st_uid, old.st_gid)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
