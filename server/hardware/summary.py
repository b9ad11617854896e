"""What the hardware endpoints answer, computed from nodes and partitions (pure functions).

Nodes are grouped by hardware: same CPUs (sockets, cores per socket, threads per core), memory,
GPUs per type and features. Partitions are not part of a group's identity: a group lists every
partition its nodes are in. Memory is in MiB, as Slurm counts it (``real_memory``).

What is free now (``avail``): a node is *available* when its base state is IDLE or MIXED, it has
no flag outside :data:`HARMLESS_FLAGS` (so DRAIN, RESERVED, PLANNED, POWERED_DOWN, MAINTENANCE,
NOT_RESPONDING, REBOOT_REQUESTED, and any flag a later Slurm adds, all mean "not available"), and
it is in at least one partition that is UP. On available nodes, free CPUs are ``cpus -
alloc_cpus``, free memory ``real_memory - specialized_memory - alloc_memory``, free GPUs per type
``gres - gres_used``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slurmgate.server.hardware.gres import UNTYPED
from slurmgate.server.hardware.nodes import Node, Partition

__all__ = [
    "BASE_STATES",
    "HARMLESS_FLAGS",
    "Selection",
    "UnknownPartition",
    "avail",
    "available",
    "base_state",
    "select",
    "stats",
    "table",
]

Json = dict[str, Any]

#: A node's base state: exactly one of these leads its state list.
BASE_STATES = ("IDLE", "MIXED", "ALLOCATED", "DOWN", "ERROR", "FUTURE", "UNKNOWN", "INVALID")
#: Flags that leave an IDLE or MIXED node available for new jobs; any other flag does not.
HARMLESS_FLAGS = frozenset(
    {
        "COMPLETING",  # a job's epilog is still running; its resources are already released
        "CLOUD",
        "DYNAMIC_NORM",
        "EXTERNAL",
        "POWER_UP",  # a power up was asked for a node that is up
        "REBOOT_CANCELED",
        "RESUME",
        "UNDRAIN",
    }
)
_DIGITS = re.compile(r"([0-9]+)")


class UnknownPartition(LookupError):
    """A partition filter that names no partition of the cluster."""


def _natural(name: str) -> tuple[tuple[int, str], ...]:
    """Sort key putting n2 before n10."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in _DIGITS.split(name) if p)


def base_state(node: Node) -> str:
    """The node's base state (UNKNOWN when slurmrestd lists none)."""
    for state in node.state:
        if state in BASE_STATES:
            return state
    return "UNKNOWN"


def available(node: Node, up: frozenset[str]) -> bool:
    """Whether new jobs can start on ``node`` now (see the module docstring)."""
    flags = set(node.state) - set(BASE_STATES)
    return (
        base_state(node) in {"IDLE", "MIXED"}
        and flags <= HARMLESS_FLAGS
        and not up.isdisjoint(node.partitions)
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """What one answer counts: nodes, the partitions listed, the UP partitions that count."""

    nodes: tuple[Node, ...]
    partitions: tuple[Partition, ...]
    up: frozenset[str]


def select(
    nodes: Sequence[Node], partitions: Sequence[Partition], partition: str | None
) -> Selection:
    """Everything, or only ``partition`` and its nodes; UnknownPartition if there is none."""
    up = frozenset(p.name for p in partitions if "UP" in p.state)
    if partition is None:
        return Selection(tuple(nodes), tuple(partitions), up)
    chosen = tuple(p for p in partitions if p.name == partition)
    if not chosen:
        names = ", ".join(sorted(p.name for p in partitions)) or "none"
        raise UnknownPartition(f"no partition {partition!r}; partitions: {names}")
    members = tuple(n for n in nodes if partition in n.partitions)
    return Selection(members, chosen, up & {partition})


@dataclass(frozen=True, slots=True)
class _Hardware:
    """What nodes of one group share."""

    cpus: int
    sockets: int
    cores: int
    threads: int
    real_memory: int
    gpus: tuple[tuple[str, int], ...]
    features: tuple[str, ...]

    def as_json(self) -> Json:
        return {
            "cpus": self.cpus,
            "sockets": self.sockets,
            "cores_per_socket": self.cores,
            "threads_per_core": self.threads,
            "real_memory": self.real_memory,
            "gpus": _gpu_list(dict(self.gpus)),
            "gpus_per_node": sum(count for _, count in self.gpus),
            "features": list(self.features),
        }


def _hardware(node: Node) -> _Hardware:
    return _Hardware(
        node.cpus,
        node.sockets,
        node.cores,
        node.threads,
        node.real_memory,
        tuple(sorted((kind, count) for kind, count in node.gpus.items() if count)),
        node.features,
    )


def _gpu_list(counts: Mapping[str, int]) -> list[Json]:
    """GPUs per type as a list; ``type`` is null for GPUs slurm.conf gives no type."""
    return [
        {"type": None if kind == UNTYPED else kind, "count": count}
        for kind, count in sorted(counts.items())
        if count
    ]


def _groups(nodes: Iterable[Node]) -> list[tuple[_Hardware, list[Node]]]:
    """Nodes by hardware; groups ordered by their first node, nodes in natural order."""
    groups: dict[_Hardware, list[Node]] = {}
    for node in sorted(nodes, key=lambda n: _natural(n.name)):
        groups.setdefault(_hardware(node), []).append(node)
    return list(groups.items())


def _partitions_of(nodes: Iterable[Node]) -> list[str]:
    return sorted({name for node in nodes for name in node.partitions})


def _add(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for kind, count in counts.items():
        total[kind] = total.get(kind, 0) + count


def table(nodes: Sequence[Node], partitions: Sequence[Partition]) -> Json:
    """``GET /hardware/table``: node groups with their hardware, counts and partitions."""
    groups = []
    for hardware, members in _groups(nodes):
        count = len(members)
        groups.append(
            {
                **hardware.as_json(),
                "partitions": _partitions_of(members),
                "node_count": count,
                "nodes": [n.name for n in members],
                "total": {
                    "cpus": hardware.cpus * count,
                    "real_memory": hardware.real_memory * count,
                    "gpus": sum(c for _, c in hardware.gpus) * count,
                },
            }
        )
    listed = []
    for partition in sorted(partitions, key=lambda p: p.name):
        members = [n for n in nodes if partition.name in n.partitions]
        gpus: dict[str, int] = {}
        for node in members:
            _add(gpus, node.gpus)
        listed.append(
            {
                "name": partition.name,
                "state": list(partition.state),
                "node_count": len(members),
                "cpus": sum(n.cpus for n in members),
                "real_memory": sum(n.real_memory for n in members),
                "gpus": sum(gpus.values()),
            }
        )
    return {"groups": groups, "partitions": listed}


def stats(nodes: Sequence[Node], partitions: Sequence[Partition]) -> Json:
    """``GET /hardware/stats``: totals, allocations, and nodes by state."""
    gpus: dict[str, int] = {}
    used: dict[str, int] = {}
    states: dict[str, int] = {}
    flags: dict[str, int] = {}
    for node in nodes:
        _add(gpus, node.gpus)
        _add(used, {k: min(v, node.gpus.get(k, 0)) for k, v in node.gpus_used.items()})
        base = base_state(node)
        states[base] = states.get(base, 0) + 1
        for flag in set(node.state) - {base}:
            flags[flag] = flags.get(flag, 0) + 1
    return {
        "nodes": len(nodes),
        "groups": len(_groups(nodes)),
        "partitions": len(partitions),
        "cpus": sum(n.cpus for n in nodes),
        "real_memory": sum(n.real_memory for n in nodes),
        "gpus": sum(gpus.values()),
        "gpus_by_type": _gpu_list(gpus),
        "allocated": {
            "cpus": sum(min(n.alloc_cpus, n.cpus) for n in nodes),
            "real_memory": sum(min(n.alloc_memory, n.real_memory) for n in nodes),
            "gpus": sum(used.values()),
        },
        "node_states": dict(sorted(states.items())),
        "node_flags": dict(sorted(flags.items())),
    }


def _free_gpus(node: Node) -> dict[str, int]:
    return {kind: max(0, count - node.gpus_used.get(kind, 0)) for kind, count in node.gpus.items()}


def _free(node: Node) -> tuple[int, int, dict[str, int]]:
    cpus = max(0, node.cpus - node.alloc_cpus)
    memory = max(0, node.real_memory - node.specialized_memory - node.alloc_memory)
    return cpus, memory, _free_gpus(node)


def avail(nodes: Sequence[Node], up: frozenset[str]) -> Json:
    """``GET /hardware/avail``: per group, the available nodes and what is free on them."""
    groups = []
    totals = {"idle_nodes": 0, "mixed_nodes": 0, "cpus": 0, "real_memory": 0, "gpus": 0}
    for hardware, members in _groups(nodes):
        free_nodes = [n for n in members if available(n, up)]
        gpus: dict[str, int] = {}
        cpus = memory = 0
        largest = {"cpus": 0, "real_memory": 0, "gpus": 0}
        for node in free_nodes:
            node_cpus, node_memory, node_gpus = _free(node)
            cpus += node_cpus
            memory += node_memory
            _add(gpus, node_gpus)
            largest["cpus"] = max(largest["cpus"], node_cpus)
            largest["real_memory"] = max(largest["real_memory"], node_memory)
            largest["gpus"] = max(largest["gpus"], sum(node_gpus.values()))
        idle = sum(1 for n in free_nodes if base_state(n) == "IDLE")
        mixed = len(free_nodes) - idle
        groups.append(
            {
                **hardware.as_json(),
                "partitions": _partitions_of(members),
                "node_count": len(members),
                "available_nodes": [n.name for n in free_nodes],
                "idle_nodes": idle,
                "mixed_nodes": mixed,
                "free": {
                    "cpus": cpus,
                    "real_memory": memory,
                    "gpus": sum(gpus.values()),
                    "gpus_by_type": _gpu_list(gpus),
                },
                "largest_free": largest,
            }
        )
        totals["idle_nodes"] += idle
        totals["mixed_nodes"] += mixed
        totals["cpus"] += cpus
        totals["real_memory"] += memory
        totals["gpus"] += sum(gpus.values())
    return {"groups": groups, "total": totals}
