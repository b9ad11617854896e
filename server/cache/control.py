"""The client's say over the cache: its ``Cache-Control`` (and HTTP/1.0 ``Pragma``) directives."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Directives", "parse_directives"]

_DIRECTIVE = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(\"[^\"]*\"|[^,\s]*))?\s*")
#: Largest delta-seconds taken (RFC 9111 5.2: larger values mean "a very long time").
_MAX_SECONDS = 2**31


@dataclass(frozen=True, slots=True)
class Directives:
    """What the client asked of the cache; the defaults mean "use it normally"."""

    #: fetch a new answer even if a fresh one is stored (``no-cache``, ``max-age=0``, ``Pragma``)
    refresh: bool = False
    #: neither read nor store (``no-store``)
    no_store: bool = False
    #: oldest stored answer acceptable, in seconds (``max-age=N``)
    max_age: int | None = None
    #: when the upstream fails: accept a stored answer stale by at most this many seconds
    #: (``stale-if-error=N``; ``stale-if-error`` alone: any stored answer); None: never
    stale_if_error: float | None = None


_NONE = Directives()


def _seconds(name: str, value: str | None) -> int:
    text = (value or "").strip('"')
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"{name} needs a number of seconds, not {value!r}")
    return min(int(text), _MAX_SECONDS)


def parse_directives(cache_control: str | None, pragma: str | None = None) -> Directives:
    """Read the request's directives; raises ValueError naming a malformed one.

    Directives the gateway has no use for (``no-transform``, ``min-fresh``...) are ignored, as
    RFC 9111 asks of caches.
    """
    if cache_control is None and pragma is None:
        return _NONE  # most requests say nothing
    refresh = no_store = False
    max_age: int | None = None
    stale_if_error: float | None = None
    for item in (cache_control or "").split(","):
        if not item.strip():
            continue
        match = _DIRECTIVE.fullmatch(item)
        if match is None:
            raise ValueError(f"cannot read directive {item.strip()!r}")
        name, value = match[1].lower(), match[2]
        if name == "no-cache":
            refresh = True
        elif name == "no-store":
            no_store = True
        elif name == "max-age":
            max_age = _seconds(name, value)
        elif name == "stale-if-error":
            stale_if_error = float("inf") if value is None else float(_seconds(name, value))
    if pragma is not None and "no-cache" in pragma.lower() and cache_control is None:
        refresh = True
    if max_age == 0:
        refresh = True
    return Directives(refresh, no_store, max_age, stale_if_error)
