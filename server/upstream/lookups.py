"""The authorization step's questions to slurmrestd: which accounts a job or a user is in now,
and a user's default account, asked as the caller (so slurmrestd's own visibility rules apply)."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from slurmgate.policies.accounts import ACCOUNT_NAME, Lookup
from slurmgate.policies.routing import Namespace
from slurmgate.server.errors import Forbidden
from slurmgate.server.upstream.acting import send_as

__all__ = ["AccountLookups"]

log = logging.getLogger("slurmgate.authz")


class AccountLookups:
    """Asks slurmrestd, as the caller and in one API version, what accounts things are in.

    One per incoming request: nothing is remembered beyond it, and within it each entity is asked
    once. Never through the response cache: a job moved to another account must not be acted on
    with a stale answer.
    """

    def __init__(
        self, app: web.Application, namespace: Namespace, version: str, *, user: str
    ) -> None:
        self._app = app
        self._namespace = namespace
        self._version = version
        self._user = user
        # user name -> its record (or None: not determinable), for this request only
        self._users: dict[str, dict[str, object] | None] = {}

    async def default_account(self, user: str) -> str:
        """``user``'s default account, or Forbidden when it cannot be determined."""
        record = await self._user_record(user)
        default = record.get("default") if record is not None else None
        account = default.get("account") if isinstance(default, dict) else None
        name = _account_name(account)
        if name is None:
            raise Forbidden(
                f"slurmgate cannot determine the default account of {user}, which the request "
                "relies on (a job without account)",
                source="default_account",
            )
        return name

    async def accounts_of(self, lookup: Lookup) -> list[str]:
        """Every account ``lookup`` is in now, or Forbidden when that cannot be determined."""
        if lookup.entity == "job":
            return await self._job_accounts(lookup.key)
        if lookup.entity == "user":
            return await self._user_accounts(lookup.key)
        raise Forbidden(
            f"slurmgate cannot look up the accounts of a {lookup.entity}",
            source=f"{lookup.entity}:{lookup.key}",
        )

    async def _job_accounts(self, key: str) -> list[str]:
        # A slurmdb route acts on accounting records, which outlive the job in slurmctld.
        namespace = "slurmdb" if self._namespace is Namespace.SLURMDB else "slurm"
        data = await self._get(f"/{namespace}/{self._version}/job/{key}")
        jobs = data.get("jobs") if data is not None else None
        accounts = _accounts_in(jobs, "account")
        if not accounts:
            raise Forbidden(
                f"slurmgate cannot determine the account of job {key} (unknown, or not visible "
                f"to {self._user})",
                source=f"job:{key}",
            )
        return accounts

    async def _user_accounts(self, name: str) -> list[str]:
        record = await self._user_record(name)
        associations = record.get("associations") if record is not None else None
        accounts = _accounts_in(associations, "account")
        # A user without associations is in no account; one that cannot be read is refused.
        if not isinstance(associations, list) or len(accounts) != len(associations):
            raise Forbidden(
                f"slurmgate cannot determine the accounts of user {name} (unknown, or not "
                f"visible to {self._user})",
                source=f"user:{name}",
            )
        return accounts

    async def _user_record(self, name: str) -> dict[str, object] | None:
        if name not in self._users:
            data = await self._get(f"/slurmdb/{self._version}/user/{name}?with_assocs")
            users = data.get("users") if data is not None else None
            only = users[0] if isinstance(users, list) and len(users) == 1 else None
            self._users[name] = (
                only if isinstance(only, dict) and only.get("name") == name else None
            )
        return self._users[name]

    async def _get(self, target: str) -> dict[str, object] | None:
        """slurmrestd's answer to GET ``target`` as the caller, or None when it is not a success."""
        answer = await send_as(
            self._app,
            "GET",
            target,
            user=self._user,
            headers=(("Accept", "application/json"),),
            purpose="lookup",
        )
        if answer.status != 200:
            log.info("lookup GET %s as %s answered %d", target, self._user, answer.status)
            return None
        try:
            data = json.loads(answer.body)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("errors"):
            return None
        return data


def _account_name(value: object) -> str | None:
    """An account name from an upstream answer, lowercased; None when it is not one."""
    if isinstance(value, str) and ACCOUNT_NAME.fullmatch(value):
        return value.lower()
    return None


def _accounts_in(items: object, key: str) -> list[str]:
    """``item[key]`` of every item; empty when there are none or any one is not an account name."""
    if not isinstance(items, list):
        return []
    names = [_account_name(item.get(key)) if isinstance(item, dict) else None for item in items]
    return [] if None in names else [name for name in names if name is not None]
