"""Who a request acts for, however it proved it: the only thing later pipeline steps read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    ``user`` is the Slurm user the gateway acts as upstream (``X-SLURM-USER-NAME``); ``scopes``
    and ``accounts`` (full-match patterns; empty = no restriction) are what it may do.
    """

    user: str
    method: Literal["token", "munge"]
    #: the token's name, or "munge:<uid>"; for logs, never a secret
    name: str
    scopes: frozenset[str]
    accounts: tuple[re.Pattern[str], ...] = ()
    #: the caller's own rate limit (requests per second, inf: none) and burst; None: the
    #: configured default (server/ops/limits.py)
    rate: float | None = None
    burst: int | None = None
