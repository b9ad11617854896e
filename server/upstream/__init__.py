"""Reaching slurmrestd: transports (http, unix socket, inetd) and the SlurmUser token.

``app.py`` lists :func:`transport_ctx`, :func:`slurm_user_token_ctx` and :func:`versions_ctx`
(which API versions slurmrestd serves, into the :class:`UpstreamVersions` registered before start)
as cleanup contexts; the rest of the gateway reaches slurmrestd through :func:`send_as`, the one
place that sets the SlurmUser token and ``X-SLURM-USER-NAME``.
"""

from __future__ import annotations

from slurmgate.server.upstream.acting import send_as
from slurmgate.server.upstream.factory import make_transport, transport_ctx
from slurmgate.server.upstream.token import SlurmUserToken, slurm_user_token_ctx
from slurmgate.server.upstream.transport import Transport, UpstreamRequest, UpstreamResponse
from slurmgate.server.upstream.versions import UpstreamVersions, versions_ctx

__all__ = [
    "SlurmUserToken",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamVersions",
    "make_transport",
    "send_as",
    "slurm_user_token_ctx",
    "transport_ctx",
    "versions_ctx",
]
