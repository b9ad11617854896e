"""The ``slurmgate`` command: one subcommand per job, each a function taking parsed arguments.

``slurmgate --version`` prints ``slurmgate X.Y.Z``, the installed distribution's version.
``slurmgate routes [--version v0.0.XX] [--json]`` prints the routing table compiled into
``slurmgate.generated`` (not the specs): scope, cache policy and group (or, for a mutation, the
cache groups it invalidates) and account locations per operation.
Later subcommands (``serve``, ``token``) register themselves in :func:`build_parser` the same way.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from slurmgate.generated import ROUTES, VERSIONS
from slurmgate.policies.routing import Route
from slurmgate.server.cli import serve
from slurmgate.server.cli import token as token_cli

__all__ = ["build_parser", "main", "version"]

Command = Callable[[argparse.Namespace, TextIO], int]

_COLUMNS = ("METHOD", "PATH", "SCOPE", "MUTATING", "CACHE", "OPERATION", "ACCOUNTS")
#: A CACHE cell longer than this (a mutation that clears most groups, like /reconfigure) overflows
#: into its row instead of widening the column of every row by dozens of blanks.
_CACHE_WIDTH = 42


def version() -> str:
    """slurmgate's version: the installed distribution's, else the source tree's pyproject.toml
    (a checkout used without installing it), else ``unknown``."""
    try:
        return importlib.metadata.version("slurmgate")
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # server/cli/commands.py
    try:
        found = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "unknown"
    return str(found)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand stores its function as ``command``."""
    parser = argparse.ArgumentParser(
        prog="slurmgate", description="Gateway in front of slurmrestd."
    )
    # Top level only: `slurmgate routes --version v0.0.XX` is the routes parser's own option.
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")
    routes = commands.add_parser(
        "routes",
        help="print the routing table of the generated API versions",
        description="Print every slurmrestd operation the gateway knows, with its scope, cache "
        "policy and group (short:jobs) or the cache groups a mutation invalidates "
        "(clears:db-jobs,jobs), and where the request names Slurm accounts.",
    )
    routes.add_argument(
        "--version",
        dest="api_version",
        metavar="v0.0.XX",
        help="only this API version (default: every generated version)",
    )
    routes.add_argument("--json", action="store_true", help="one JSON object per line")
    routes.set_defaults(command=_routes)
    serve.register(commands)
    token_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slurmgate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    supported = [api.version for api in VERSIONS]
    if args.name == "routes" and args.api_version is not None and args.api_version not in supported:
        parser.exit(
            2,
            f"slurmgate routes: unknown API version {args.api_version!r}; "
            f"supported: {', '.join(supported)}\n",
        )
    command: Command = args.command
    try:
        return command(args, sys.stdout)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, and keep Python's exit-time flush
        # of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _routes(args: argparse.Namespace, out: TextIO) -> int:
    versions = [args.api_version] if args.api_version else [api.version for api in VERSIONS]
    if args.json:
        for version in versions:
            for route in ROUTES[version]:
                out.write(json.dumps({"version": version, **route.as_json()}) + "\n")
        return 0
    rows: list[tuple[str, ...]] = [_COLUMNS]
    rows += [_row(route) for version in versions for route in ROUTES[version]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    cache = _COLUMNS.index("CACHE")
    widths[cache] = max(len(row[cache]) for row in rows if len(row[cache]) <= _CACHE_WIDTH)
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    return 0


def _row(route: Route) -> tuple[str, ...]:
    accounts = ",".join(str(location) for location in route.accounts) or "-"
    return (
        route.method,
        route.path,
        route.scope,
        "yes" if route.mutating else "no",
        _cache_cell(route),
        route.operation_id,
        accounts,
    )


def _cache_cell(route: Route) -> str:
    # One column, not two more: a read has a group and a mutation has groups to clear, never both.
    if route.mutating:
        return "clears:" + (",".join(route.invalidates) or "-")
    if route.cache_group:
        return f"{route.cache}:{route.cache_group}"
    return str(route.cache)
