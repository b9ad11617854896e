"""Cache keys: what makes two requests the same request, and nothing more.

Key material is the request target (the path as rebuilt from the route's template, so ``latest``
does not split entries, and without a trailing slash, which slurmrestd ignores too) with its
query parameters sorted by name, the ``Accept`` header, and the user when answers differ per user
(Slurm's PrivateData). The query is compared as the client wrote it, byte for byte apart from
the order of differently named parameters: decoding it here could make two requests that
slurmrestd reads differently share an entry. Keys are hashed so their length does not depend on
the client.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from urllib.parse import unquote

from slurmgate.server.cache.entry import FORMAT

__all__ = ["KeySpace", "has_update_time", "key_material", "normalize_query"]


def normalize_query(query: str) -> str:
    """``query`` with its parameters sorted by name; same-named ones keep their order."""
    if not query:
        return ""
    pairs = [part for part in query.split("&") if part]
    pairs.sort(key=lambda part: part.partition("=")[0])
    return "&".join(pairs)


@functools.lru_cache(maxsize=1024)
def has_update_time(query: str) -> bool:
    """Whether the query carries ``update_time`` (in any spelling slurmrestd might decode)."""
    for part in query.split("&"):
        name = unquote(part.partition("=")[0].replace("+", " ")).strip().lower()
        if name == "update_time":
            return True
    return False


@functools.lru_cache(maxsize=4096)
def key_material(target: str, accept: str, user: str | None, restriction: str = "") -> str:
    """The text two requests must share to share an answer.

    ``restriction`` is what else the answer depends on: for the gateway's own endpoints, the
    token's account patterns (a usage report shows only their accounts).
    """
    path, _, query = target.partition("?")
    normalized = normalize_query(query)
    accept = _accept(accept)
    lines = [path.rstrip("/") + ("?" + normalized if normalized else ""), accept]
    if user is not None:
        lines.append(user)
    if restriction:
        lines.append(f"accounts:{restriction}")
    return "\n".join(lines)


#: Accept values for which slurmrestd answers JSON, its default: one entry for all of them.
_MEANS_JSON = frozenset({"", "*/*", "application/*", "application/json"})


def _accept(accept: str) -> str:
    """``Accept`` as far as it changes slurmrestd's answer: JSON, or the types as written."""
    types = [part.split(";")[0].strip() for part in accept.lower().split(",")]
    if all(media in _MEANS_JSON for media in types):
        return "application/json"
    return ",".join(part.strip() for part in accept.lower().split(","))


@functools.lru_cache(maxsize=4096)
def _entry_key(root: str, material: str) -> str:
    """Hashed once per key text: the same few keys are asked for over and over."""
    digest = hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{root}:entry:{digest}"


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The names the gateway uses in a backend, all under ``<prefix>:<format>:``."""

    prefix: str

    @property
    def root(self) -> str:
        """The namespace of every key this gateway writes."""
        return f"{self.prefix}:{FORMAT}"

    def entry(self, material: str) -> str:
        """Key of the stored answer for ``material``."""
        return _entry_key(self.root, material)

    def generation(self, group: str) -> str:
        """Key of the generation token of cache group ``group``."""
        return f"{self.root}:generation:{group}"

    def lock(self, entry_key: str) -> str:
        """Key of the lock a replica holds while it fills ``entry_key``."""
        return entry_key.replace(":entry:", ":lock:", 1)
