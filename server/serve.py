"""``slurmgate serve --config slurmgate.toml``: run the gateway in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TextIO

from aiohttp import web

from slurmgate.server.app import build_app
from slurmgate.server.config import load_settings
from slurmgate.server.errors import ConfigError
from slurmgate.server.logs import configure_logging
from slurmgate.server.tls import server_context

__all__ = ["register"]


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
    listen = settings.listen
    # Until the reloader (server/reload.py) takes SIGHUP over, and after it lets go, a reload
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
