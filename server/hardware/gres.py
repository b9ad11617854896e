"""GPUs out of Slurm's GRES strings, as slurmctld writes them in a node's ``gres``/``gres_used``.

``gres`` is a comma-separated list of ``name[:type][:flag...]:count[(S:sockets)]``, e.g.
``gpu:h100:2(S:0-1),gpu:h200:4,shard:8``; ``gres_used`` the same with ``(IDX:0-1)`` instead of
sockets, e.g. ``gpu:h100:1(IDX:0),gpu:h200:0(IDX:N/A)``. Only ``gpu`` entries count. Counts may
carry a binary suffix (``k``, ``m``, ``g``, ``t``, ``p``) as Slurm's own parser accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["UNTYPED", "gpus", "gpus_total"]

#: The type reported for GPUs that slurm.conf gives no type (``gres=gpu:4``).
UNTYPED = ""

_COUNT = re.compile(r"([0-9]+)([kmgtpKMGTP]?)")
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
#: GRES flags that can stand between the type and the count (``gpu:a100:no_consume:2``).
_FLAGS = frozenset({"no_consume"})


def _entries(text: str) -> Iterable[str]:
    """The top-level comma-separated entries (commas inside ``(...)`` do not split)."""
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def gpus(text: str) -> dict[str, int]:
    """GPU count per type in a GRES string (``UNTYPED`` for GPUs without a type).

    Entries that cannot be read (no count, an unknown form) raise ValueError naming them: a
    hardware table that silently loses GPUs would be wrong without anyone noticing.
    """
    counts: dict[str, int] = {}
    for raw in _entries(text.strip()):
        entry = raw.split("(", 1)[0].strip()
        if not entry or entry in {"(null)", "N/A"}:
            continue
        parts = entry.split(":")
        if parts[0] != "gpu":
            continue
        count_match = _COUNT.fullmatch(parts[-1]) if len(parts) > 1 else None
        if count_match is None:
            raise ValueError(f"GRES entry {raw!r} has no count")
        middle = [part for part in parts[1:-1] if part not in _FLAGS]
        if len(middle) > 1:
            raise ValueError(f"GRES entry {raw!r} is not gpu[:type]:count")
        kind = middle[0] if middle else UNTYPED
        count = int(count_match[1]) * _SUFFIX[count_match[2].lower()]
        counts[kind] = counts.get(kind, 0) + count
    return counts


def gpus_total(counts: Mapping[str, int]) -> int:
    """All GPUs of a per-type count."""
    return sum(counts.values())
