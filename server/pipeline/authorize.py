"""Authorization: the token's scopes must include the operation's, and account limits fail closed.

Every operation's required scope comes from the generated routing table. A token whose account
patterns restrict it may not yet use a mutating operation that names Slurm accounts: finding
every account such a request touches (bodies of every version, job lookups, default accounts)
is the next step, and until it exists the only safe answer is no. Reads are not restricted by
account.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from slurmgate.server.errors import Forbidden
from slurmgate.server.keys import IDENTITY, ROUTE

__all__ = ["authorize"]


def authorize() -> Middleware:
    """Refuse (403) what the caller's identity does not allow; pass the rest on."""

    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.get(ROUTE)
        if route is None:
            # The gateway's own public endpoints, and requests that matched nothing (404/405).
            return await handler(request)
        identity = request[IDENTITY]
        if route.scope not in identity.scopes:
            raise Forbidden(
                f"{identity.name} lacks the scope {route.scope} that {route.method} "
                f"{route.path} needs",
                source=f"scope:{route.scope}",
            )
        if identity.accounts and route.mutating and route.accounts:
            raise Forbidden(
                f"{identity.name} is limited to some Slurm accounts, and slurmgate cannot yet "
                f"check which accounts {route.method} {route.path} would touch",
                source="accounts",
            )
        return await handler(request)

    return impl
