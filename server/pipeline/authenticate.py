"""Request pipeline, step 1: establish who the caller is, or answer 401.

Credentials, exactly one of:

- ``Authorization: Bearer <secret>`` (a secret made by `slurmgate token create`);
- ``X-SLURM-USER-TOKEN: <secret>`` (slurmrestd's header, for its existing clients);
- ``Authorization: MUNGE <credential>`` (``munge -n -t <max_age>`` on a cluster node).

``X-SLURM-USER-NAME`` may accompany any of them; it must then name the credential's own user.
Anything ambiguous (a header twice, Authorization together with X-SLURM-USER-TOKEN, a second
credential in one header) is refused rather than guessed at. Routes named ``public-*`` and requests
that match no route (their 404/405 comes from routing) are not authenticated; routes named
``optional-*`` (``GET /health``) are served without credentials, but credentials that are sent are
checked like anywhere else. Records ``request[DECISION]``: "public" for a request served without
credentials, "unauthenticated" for a refusal (authorize records the rest).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from slurmgate.server.errors import Unauthenticated
from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.refusal import RefusalLog, Refused
from slurmgate.server.keys import DECISION, IDENTITY, MUNGE, TOKENS

__all__ = ["MAX_HEADER_CHARS", "Step", "authenticate"]

log = logging.getLogger("slurmgate.auth")

#: Longer credential headers are refused before any parsing.
MAX_HEADER_CHARS = 4096

# RFC 9110 credentials: a scheme, one or more spaces, one token68 (checked per scheme below).
_AUTHORIZATION = re.compile(r"([A-Za-z][A-Za-z0-9-]*) +(\S+)", re.ASCII)
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*", re.ASCII)
_USER_HEADERS = ("Authorization", "X-SLURM-USER-TOKEN", "X-SLURM-USER-NAME")


#: The authentication step: sets ``request[IDENTITY]`` (or nothing) or raises Unauthenticated.
Step = Callable[[web.Request], Awaitable[None]]


def authenticate(
    *, public_prefix: str = "public-", optional_prefix: str = "optional-", log_interval: float = 1.0
) -> Step:
    """The authentication step; sets ``request[IDENTITY]`` or raises Unauthenticated.

    Routes whose name starts with ``public_prefix`` are served without credentials, those whose
    name starts with ``optional_prefix`` too when the request carries none. The token
    store and the MUNGE verifier are read from the app (``TOKENS``, ``MUNGE``), set up by the
    cleanup contexts ``tokens_ctx`` and ``munge_ctx``. Refusals are logged at most once per
    description every ``log_interval`` seconds (see :class:`RefusalLog`).
    """
    refusals = RefusalLog(log, interval=log_interval)

    async def impl(request: web.Request) -> None:
        match = request.match_info
        if match.http_exception is not None:
            return
        route_name = match.route.name
        if route_name is not None and (
            route_name.startswith(public_prefix)
            or (
                route_name.startswith(optional_prefix)
                and not any(header in request.headers for header in _USER_HEADERS)
            )
        ):
            request[DECISION] = "public"
            return
        try:
            identity = await _identify(request)
        except Refused as refusal:
            request[DECISION] = "unauthenticated"
            refusals.log(
                logging.ERROR if refusal.trouble else logging.WARNING,
                refusal.description,
                "refused %s %s from %s: %s (token %s)",
                request.method,
                request.raw_path,
                request.remote,
                refusal.reason,
                refusal.name or "-",
            )
            raise Unauthenticated(refusal.description, source="slurmgate authentication") from None
        request[IDENTITY] = identity

    return impl


def _single(request: web.Request, header: str) -> str | None:
    values = request.headers.getall(header, ())
    if len(values) > 1:
        raise Refused(f"{header} given more than once", reason=f"{len(values)} {header} headers")
    if values and len(values[0]) > MAX_HEADER_CHARS:
        raise Refused(
            f"{header} longer than {MAX_HEADER_CHARS} characters",
            reason=f"{header} of {len(values[0])} characters",
        )
    return values[0] if values else None


async def _identify(request: web.Request) -> Identity:
    authorization = _single(request, "Authorization")
    user_token = _single(request, "X-SLURM-USER-TOKEN")
    user_name = _single(request, "X-SLURM-USER-NAME")
    if authorization is not None and user_token is not None:
        raise Refused(
            "give either Authorization or X-SLURM-USER-TOKEN, not both",
            reason="both Authorization and X-SLURM-USER-TOKEN",
        )
    if user_token is not None:
        identity = _bearer(request, user_token)
    elif authorization is not None:
        parsed = _split(authorization)
        if parsed is not None and parsed[0] == "bearer":
            identity = _bearer(request, parsed[2])  # no await for the commonest credentials
        else:
            identity = await _authorization(request, authorization)
    else:
        raise Refused(
            "no credentials: send Authorization: Bearer <token> or MUNGE <credential>",
            reason="no credentials",
        )
    if user_name is not None and user_name != identity.user:
        raise Refused(
            "X-SLURM-USER-NAME names another user than the credentials",
            reason=f"X-SLURM-USER-NAME {user_name!r} but credentials of {identity.user!r}",
            name=identity.name,
        )
    return identity


@functools.lru_cache(maxsize=1024)
def _split(value: str) -> tuple[str, str, str] | None:
    """``(scheme in lower case, scheme as sent, credentials)`` of an Authorization value.

    Remembered because clients send the same header on every request; the values held are
    credentials the token store remembers anyway, and a malformed one (None) costs a slot only.
    """
    parsed = _AUTHORIZATION.fullmatch(value)
    if parsed is None:
        return None
    return parsed.group(1).lower(), parsed.group(1), parsed.group(2)


@functools.lru_cache(maxsize=1024)
def _is_token68(secret: str) -> bool:
    return _TOKEN68.fullmatch(secret) is not None


async def _authorization(request: web.Request, value: str) -> Identity:
    parsed = _split(value)
    if parsed is None:
        raise Refused(
            "Authorization must be '<scheme> <credentials>'",
            reason="malformed Authorization header",
        )
    scheme, sent, credentials = parsed
    if scheme == "bearer":
        return _bearer(request, credentials)
    if scheme == "munge":
        verifier = request.app.get(MUNGE)
        if verifier is None:
            raise Refused("MUNGE authentication is not enabled", reason="MUNGE disabled")
        return await verifier.verify(credentials, request.remote)
    raise Refused(
        "unsupported authorization scheme: use Bearer or MUNGE",
        reason=f"scheme {sent[:32]!r}",
    )


def _bearer(request: web.Request, secret: str) -> Identity:
    if not _is_token68(secret):
        raise Refused("invalid bearer token", reason="token has characters outside token68")
    store = request.app.get(TOKENS)
    if store is None:
        raise Refused(
            "bearer tokens cannot be checked right now",
            reason="no token store (tokens_ctx is not set up)",
            trouble=True,
        )
    return store.verify(secret, request.remote)
