"""The ``slurmgate`` command: ``routes`` (commands.py), ``serve`` (serve.py, its TLS in tls.py),
``token`` (token.py, token_show.py). The console script is :func:`main`."""

from slurmgate.server.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
