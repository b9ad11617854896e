"""slurmrestd's ``GET /slurm/v0.0.XX/nodes`` and ``/partitions`` answers, read into plain records.

Only the fields the hardware summaries use are read, and they are the same from v0.0.40 to
v0.0.45: numbers are plain integers (or slurmrestd's ``{"set", "infinite", "number"}`` form),
``features``, ``partitions`` and states are string lists (or comma-separated strings, which the
specs allow for ``csv_string``). A field of the wrong type is an error naming the node and the
field, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slurmgate.server.hardware.gres import gpus

__all__ = ["Node", "Partition", "UnreadableAnswer", "read_nodes", "read_partitions"]


class UnreadableAnswer(ValueError):
    """A slurmrestd answer that does not have the shape the summaries need."""


@dataclass(frozen=True, slots=True)
class Node:
    """One node as the hardware summaries see it (memory in MiB, as Slurm counts it)."""

    name: str
    cpus: int
    sockets: int
    cores: int
    threads: int
    real_memory: int
    specialized_memory: int
    alloc_cpus: int
    alloc_memory: int
    #: GPUs per type (gres), and those allocated (gres_used)
    gpus: Mapping[str, int]
    gpus_used: Mapping[str, int]
    features: tuple[str, ...]
    partitions: tuple[str, ...]
    #: base state and flags, upper case, as slurmrestd lists them (["MIXED", "DRAIN"])
    state: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its name and states (["UP"], ["DOWN"], ["INACTIVE"], ["DRAIN"])."""

    name: str
    state: tuple[str, ...]


def _integer(record: Mapping[str, object], key: str, where: str) -> int:
    value = record.get(key, 0)
    if isinstance(value, Mapping):
        # slurmrestd's optional numbers: {"set": bool, "infinite": bool, "number": int}
        if not value.get("set", False) or value.get("infinite", False):
            return 0
        value = value.get("number", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnreadableAnswer(f"{where}: {key} is {value!r}, not a number")
    return value


def _strings(record: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if isinstance(value, str):
        items: Sequence[object] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise UnreadableAnswer(f"{where}: {key} is {value!r}, not a list of strings")
    if not all(isinstance(item, str) for item in items):
        raise UnreadableAnswer(f"{where}: {key} holds something other than strings")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _text(record: Mapping[str, object], key: str, where: str) -> str:
    value = record.get(key, "")
    if not isinstance(value, str):
        raise UnreadableAnswer(f"{where}: {key} is {value!r}, not a string")
    return value


def _records(answer: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    records = answer.get(key)
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise UnreadableAnswer(f"the answer has no list of {key}")
    return records


def read_nodes(answer: Mapping[str, object]) -> tuple[Node, ...]:
    """The nodes of a ``GET /slurm/v0.0.XX/nodes`` answer, in its order."""
    nodes = []
    for index, record in enumerate(_records(answer, "nodes")):
        name = record.get("name")
        if not isinstance(name, str) or not name:
            raise UnreadableAnswer(f"node {index} has no name")
        where = f"node {name}"
        try:
            gpu_counts = gpus(_text(record, "gres", where))
            used = gpus(_text(record, "gres_used", where))
        except ValueError as error:
            raise UnreadableAnswer(f"{where}: {error}") from None
        nodes.append(
            Node(
                name=name,
                cpus=_integer(record, "cpus", where),
                sockets=_integer(record, "sockets", where),
                cores=_integer(record, "cores", where),
                threads=_integer(record, "threads", where),
                real_memory=_integer(record, "real_memory", where),
                specialized_memory=_integer(record, "specialized_memory", where),
                alloc_cpus=_integer(record, "alloc_cpus", where),
                alloc_memory=_integer(record, "alloc_memory", where),
                gpus=gpu_counts,
                gpus_used=used,
                features=tuple(sorted(set(_strings(record, "features", where)))),
                partitions=tuple(sorted(set(_strings(record, "partitions", where)))),
                state=tuple(s.upper() for s in _strings(record, "state", where)),
            )
        )
    return tuple(nodes)


def read_partitions(answer: Mapping[str, object]) -> tuple[Partition, ...]:
    """The partitions of a ``GET /slurm/v0.0.XX/partitions`` answer, in its order."""
    partitions = []
    for index, record in enumerate(_records(answer, "partitions")):
        name = record.get("name")
        if not isinstance(name, str) or not name:
            raise UnreadableAnswer(f"partition {index} has no name")
        block = record.get("partition", {})
        if not isinstance(block, Mapping):
            raise UnreadableAnswer(f"partition {name}: 'partition' is not an object")
        state = _strings(block, "state", f"partition {name}")
        partitions.append(Partition(name, tuple(s.upper() for s in state)))
    return tuple(partitions)
