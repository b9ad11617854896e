"""``slurmgate serve --config slurmgate.toml``: run the gateway in the foreground."""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys
from pathlib import Path
from typing import TextIO

from aiohttp import web

from slurmgate.server.app import build_app
from slurmgate.server.cli.tls import server_context
from slurmgate.server.config import Settings, load_settings
from slurmgate.server.errors import ConfigError
from slurmgate.server.ops.logs import configure_logging

__all__ = ["raise_file_limit", "register"]

log = logging.getLogger("slurmgate.server")

#: Descriptors kept for everything but cached answers: connections, upstream, Redis, logs.
_SPARE_FILES = 4096


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway in the foreground until SIGTERM or SIGINT, which stop it "
        "gracefully (listen.shutdown_timeout). SIGHUP reloads the tokens file and the "
        "configuration's policies (docs/operations.md).",
    )
    serve.add_argument("--config", type=Path, required=True, help="the configuration file (TOML)")
    serve.set_defaults(command=_serve)


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    try:
        settings = load_settings(args.config)
        ssl_context = server_context(settings.listen.tls, str(args.config))
    except ConfigError as error:
        for problem in error.problems:
            print(f"slurmgate serve: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, sys.stderr)
    raise_file_limit(settings)
    listen = settings.listen
    # Until the reloader (server/ops/reload.py) takes SIGHUP over, and after it lets go, a reload
    # request must not kill the gateway (the default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    scheme = "https" if ssl_context is not None else "http"
    print(f"slurmgate: listening on {scheme}://{listen.host}:{listen.port}", file=out, flush=True)
    web.run_app(
        build_app(settings, config_file=args.config),
        host=listen.host,
        port=listen.port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,
        # SIGTERM, SIGINT: aiohttp closes the listening socket, waits this long for requests
        # under way, then runs the cleanup contexts (upstream, cache) in reverse.
        shutdown_timeout=listen.shutdown_timeout,
    )
    return 0


def raise_file_limit(settings: Settings) -> int:
    """Raise this process's soft limit on open files to its hard limit; the soft limit now.

    Each answer the cache keeps in a memory file holds a descriptor (docs/caching.md), up to
    ``memory_max_bytes / memory_file_min_bytes`` of them (and as many for Redis local copies),
    on top of the connections; a shell's soft limit is often 1,024 although the hard one is far
    higher. Warns when even the hard limit leaves less than that plus a few thousand spare.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError) as error:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, wanted, error)
    cache = settings.cache
    files = 0
    if cache.memory_file_min_bytes:
        budgets = {"memory": cache.memory_max_bytes, "redis": cache.redis_local_max_bytes}
        files = budgets.get(cache.backend, 0) // cache.memory_file_min_bytes
    needed = files + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open files limit %d: the cache may hold up to %d memory files "
            "(cache.memory_max_bytes or redis_local_max_bytes / memory_file_min_bytes) besides "
            "the connections; raise LimitNOFILE (systemd) or ulimit -n to %d or more",
            soft,
            files,
            needed,
        )
    return soft
