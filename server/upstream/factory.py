"""The transport the settings ask for, and the cleanup context that owns it for the app's life."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from yarl import URL

from slurmgate.server.config import UpstreamSettings
from slurmgate.server.keys import SETTINGS, TRANSPORT
from slurmgate.server.upstream.http_client import HttpTransport
from slurmgate.server.upstream.inetd import InetdTransport
from slurmgate.server.upstream.transport import Transport

__all__ = ["make_transport", "transport_ctx"]

log = logging.getLogger("slurmgate.upstream")


def make_transport(settings: UpstreamSettings) -> Transport:
    """A new transport for ``settings``; call it inside a running event loop, close it once."""
    if settings.transport == "http":
        assert settings.url is not None  # UpstreamSettings checks it
        return HttpTransport.tcp(
            settings.url,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            max_connections=settings.max_connections,
            max_response_bytes=settings.max_response_bytes,
        )
    if settings.transport == "unix":
        assert settings.socket is not None  # UpstreamSettings checks it
        return HttpTransport.unix(
            settings.socket,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            max_connections=settings.max_connections,
            max_response_bytes=settings.max_response_bytes,
        )
    return InetdTransport(
        settings.command,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_processes=settings.max_processes,
        max_response_bytes=settings.max_response_bytes,
    )


async def transport_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[TRANSPORT]`` from ``app[SETTINGS].upstream``, closed at shutdown."""
    settings = app[SETTINGS].upstream
    transport = make_transport(settings)
    app[TRANSPORT] = transport
    log.info("upstream: %s transport to %s", settings.transport, _where(settings))
    try:
        yield
    finally:
        await transport.close()


def _where(settings: UpstreamSettings) -> str:
    if settings.transport == "http":
        # Without any user:password a URL may carry.
        return str(URL(str(settings.url)).with_user(None))
    if settings.transport == "unix":
        return str(settings.socket)
    return " ".join(settings.command)
