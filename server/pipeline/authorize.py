"""Authorization: the operation's scope, the group and network requirements that pick it, and
for account-limited tokens every account a mutating request touches; 403 otherwise.

The rules are in docs/authorization.md; their pure parts are in policies/ (``accounts.py``: which
accounts a request names, parsed strictly with the generated models; ``requirements.py``: which
rules pick an operation). What this step adds: the caller's default account and the current
accounts of the jobs and users a request acts on, asked upstream as the caller, live
(server/upstream/lookups.py); fail closed on anything undetermined (403), and 400 for a body or
query the gateway and slurmrestd could read differently. The bytes checked are the bytes
forwarded (``request.read()`` caches them). Records ``request[DECISION]``: "allow" or "deny".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from slurmgate.policies.accounts import (
    AccountsUnknown,
    BodyRefused,
    parse_body,
    touched,
)
from slurmgate.policies.requirements import (
    Requirement,
    applicable,
    missing_group,
    outside_networks,
    source_address,
)
from slurmgate.policies.routing import Route
from slurmgate.server.errors import BadRequest, ClientError, Forbidden
from slurmgate.server.identity.base import Identity
from slurmgate.server.identity.refusal import RefusalLog
from slurmgate.server.keys import DECISION, IDENTITY, ROUTE
from slurmgate.server.upstream.lookups import AccountLookups

__all__ = ["MAX_LOOKUPS", "Step", "authorize", "query_pairs"]

log = logging.getLogger("slurmgate.authz")

#: Lookups one request may cause; a bulk request naming more jobs is refused, not fanned out.
MAX_LOOKUPS = 64
#: What slurmrestd's URL query parser takes unencoded: RFC 3986 unreserved characters, "%" escapes,
#: "+" (a space), and the separators "&", ";" and "=". It refuses the whole query for anything else.
_QUERY_CHARACTERS = re.compile(r"[A-Za-z0-9~._%+&;=-]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SOURCE_KIND = re.compile(r"[:.\[]")

#: A user name -> its Unix group names (raises when they cannot be resolved).
Groups = Callable[[str], Awaitable[frozenset[str]]]


async def _no_groups(user: str) -> frozenset[str]:
    raise LookupError(f"no way to resolve the groups of {user!r} is configured")


#: The authorization step: returns when the request is allowed, raises ClientError otherwise.
Step = Callable[[web.Request], Awaitable[None]]


def authorize(*, requirements: Sequence[Requirement] = (), groups: Groups = _no_groups) -> Step:
    """Refuse (403) what the caller's identity does not allow; pass the rest on.

    ``requirements`` are the configuration's group and network rules; ``groups`` resolves a
    user's groups for them (``GroupCache.groups``).
    """
    refusals = RefusalLog(log)

    async def impl(request: web.Request) -> None:
        route = request.get(ROUTE)
        if route is None:
            return  # public endpoints and requests that matched nothing: no credentials
        identity = request.get(IDENTITY)
        if identity is None:
            return  # an optional endpoint (GET /health) asked without credentials
        try:
            if route.scope not in identity.scopes:
                raise Forbidden(
                    f"{identity.name} lacks the scope {route.scope} that {route.method} "
                    f"{route.path} needs",
                    source=f"scope:{route.scope}",
                )
            rules = applicable(requirements, route)
            if rules:
                await _check_requirements(request, route, identity, rules, groups)
            if identity.accounts and route.mutating and route.accounts:
                await _check_accounts(request, route, identity)
        except ClientError as error:
            refusals.log(
                logging.WARNING,
                # A fixed set of keys (account, body, query, job...), whatever the client sends.
                f"{error.status} {_SOURCE_KIND.split(error.source, 1)[0]}",
                "refused %s %s for %s (user %s): %d %s",
                route.method,
                route.path,
                identity.name,
                identity.user,
                error.status,
                error.description,
            )
            request[DECISION] = "deny"
            raise
        request[DECISION] = "allow"

    return impl


async def _check_requirements(
    request: web.Request,
    route: Route,
    identity: Identity,
    rules: Sequence[Requirement],
    groups: Groups,
) -> None:
    """Raise unless the request comes from each rule's networks and the user is in its groups."""
    operation = f"{route.method} {route.path}"
    rule = outside_networks(rules, source_address(request.remote))
    if rule is not None:
        networks = ", ".join(str(network) for network in rule.networks)
        raise Forbidden(
            f"{operation} may be used only from {networks} ({rule.origin}); this request comes "
            f"from {request.remote or 'an unknown address'}",
            source="network",
        )
    if not any(rule.groups for rule in rules):
        return
    try:
        member_of = await groups(identity.user)
    except (LookupError, OSError, ValueError) as error:
        log.error("cannot resolve the Unix groups of %s: %s", identity.user, error)
        raise Forbidden(
            f"slurmgate cannot determine the Unix groups of {identity.user}, which {operation} "
            "requires",
            source="group",
        ) from None
    rule = missing_group(rules, member_of)
    if rule is not None:
        wanted = " or ".join(rule.groups)
        raise Forbidden(
            f"{identity.user} must be in the Unix group {wanted} to use {operation} "
            f"({rule.origin})",
            source=f"group:{','.join(rule.groups)}",
        )


async def _check_accounts(request: web.Request, route: Route, identity: Identity) -> None:
    """Raise unless every account the request touches matches one of the identity's patterns."""
    raw = await request.read()  # cached by aiohttp: forward() sends these same bytes
    operation = f"{route.method} {route.path}"
    try:
        body = parse_body(raw, request.headers.get("Content-Type"), route=route)
        query = query_pairs(request.rel_url.raw_query_string)
        touches = touched(route, body, request.match_info, query)
    except BodyRefused as error:
        raise BadRequest(
            f"{operation}: {error.where}: {error.why}; slurmgate forwards only bodies it reads "
            "exactly as slurmrestd does",
            source=error.where,
        ) from None
    except AccountsUnknown as error:
        raise Forbidden(
            f"{identity.name} is limited to some Slurm accounts, and slurmgate cannot tell which "
            f"accounts {operation} would touch: {error.where}: {error.why}",
            source=error.where,
        ) from None
    if touches.all_accounts:
        raise Forbidden(
            f"{identity.name} is limited to some Slurm accounts, and {operation} without an "
            "account filter acts on every account; name the account(s)",
            source="accounts",
        )
    for account in sorted(touches.accounts):
        _allow(identity, account, f"{operation} names account {account}")
    if len(touches.lookups) > MAX_LOOKUPS:
        raise Forbidden(
            f"{operation} names {len(touches.lookups)} existing jobs or users; an account-limited "
            f"token may name at most {MAX_LOOKUPS} per request",
            source="accounts",
        )
    upstream = AccountLookups(
        request.app, route.namespace, route.path.split("/")[2], user=identity.user
    )
    if touches.default_account:
        if _for_another_user(body):
            # The job would take the default account of that user, not the caller's.
            raise Forbidden(
                f"{identity.name} is limited to some Slurm accounts: a job submitted for another "
                "user (user_id) must name its account",
                source="default_account",
            )
        account = await upstream.default_account(identity.user)
        _allow(identity, account, f"{operation} uses {identity.user}'s default account {account}")
    for lookup in touches.lookups:
        for account in await upstream.accounts_of(lookup):
            _allow(identity, account, f"{lookup.entity} {lookup.key} is in account {account}")


def _for_another_user(body: object) -> bool:
    """Whether a job description in ``body`` sets ``user_id`` (submitting for someone else)."""
    if not isinstance(body, dict):
        return False
    descriptions: list[object] = [body.get("job")]
    for key in ("jobs", "hetjob"):
        items = body.get(key)
        descriptions += items if isinstance(items, list) else [items]
    return any(isinstance(d, dict) and d.get("user_id") is not None for d in descriptions)


def _allow(identity: Identity, account: str, why: str) -> None:
    if not any(pattern.fullmatch(account) for pattern in identity.accounts):
        raise Forbidden(
            f"{identity.name} may not act on Slurm account {account}: {why}",
            source=f"account:{account}",
        )


# --- the query, as slurmrestd reads it ---------------------------------------------------------


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """Decode a raw query string into (name, value) pairs, in order, repeats kept.

    Splits on ``&`` only (``;``, which slurmrestd also splits on, stays in and is refused by
    ``touched()``); a pair without ``=`` is a flag with an empty value. Raises ``BadRequest`` for
    what slurmrestd refuses or could read differently: a character it does not take unencoded,
    an invalid or NUL or 0xFF escape, more than one ``=``, an empty name, escapes that are not
    UTF-8.
    """
    if _QUERY_CHARACTERS.fullmatch(raw) is None:
        bad = next(c for c in raw if _QUERY_CHARACTERS.fullmatch(c) is None)
        raise BadRequest(
            f"the query has the character {bad!r}, which slurmrestd refuses unencoded",
            source="query",
        )
    pairs = []
    for pair in raw.split("&"):
        if not pair:
            continue  # "a=1&&b=2": slurmrestd skips empty pairs
        name, equals, value = pair.partition("=")
        if "=" in value:
            raise BadRequest(f"query pair {pair!r} has more than one '='", source="query")
        if not name:
            raise BadRequest(f"query pair {pair!r} has no name", source="query")
        pairs.append((_decode(name), _decode(value) if equals else ""))
    return pairs


def _decode(text: str) -> str:
    def byte(match: re.Match[str]) -> str:
        value = int(match.group(1), 16)
        if value in (0x00, 0xFF):  # slurmrestd refuses both escapes
            raise BadRequest(f"the query has the escape {match.group(0)}", source="query")
        return chr(value)  # one byte, as latin-1, re-read below as UTF-8

    spaced = text.replace("+", " ")  # RFC 1866, as slurmrestd reads it
    if "%" in _ESCAPE.sub("", spaced):
        raise BadRequest(f"the query has an invalid escape in {text!r}", source="query")
    decoded = _ESCAPE.sub(byte, spaced)
    try:
        return decoded.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the query's escapes in {text!r} are not UTF-8", source="query") from None
