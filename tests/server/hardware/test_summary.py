"""The hardware summaries on the lab's recorded nodes and partitions (record.py), and on nodes
derived from them: busy, drained, reserved, down, with GPUs (GRES strings in the forms Slurm 24.05
to 25.11 write)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from slurmgate.server.hardware.nodes import (
    Node,
    Partition,
    UnreadableAnswer,
    read_nodes,
    read_partitions,
)
from slurmgate.server.hardware.summary import (
    HARMLESS_FLAGS,
    UnknownPartition,
    avail,
    available,
    base_state,
    select,
    stats,
    table,
)

RECORDINGS = Path(__file__).parent / "recordings"
SUITES = ["trixie-v0.0.42", "forky-v0.0.45"]


def recorded(suite: str, what: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (RECORDINGS / f"{suite}-idle-{what}.json").read_text(encoding="utf-8")
    )
    return data


def derived(template: dict[str, Any], name: str, **fields: object) -> dict[str, Any]:
    """A copy of a recorded node with another name and ``fields`` changed."""
    node = copy.deepcopy(template)
    node.update(name=name, **fields)
    return node


@pytest.mark.parametrize("suite", SUITES)
def test_recorded_nodes_are_read_as_slurmrestd_sent_them(suite: str) -> None:
    answer = recorded(suite, "nodes")
    nodes = read_nodes(answer)
    assert [n.name for n in nodes] == [n["name"] for n in answer["nodes"]]
    for node, raw in zip(nodes, answer["nodes"], strict=True):
        assert (node.cpus, node.real_memory, node.alloc_cpus) == (
            raw["cpus"],
            raw["real_memory"],
            raw["alloc_cpus"],
        )
        assert (node.sockets, node.cores, node.threads) == (
            raw["sockets"],
            raw["cores"],
            raw["threads"],
        )
        assert set(node.partitions) == set(raw["partitions"])
        assert node.state == tuple(raw["state"])
    partitions = read_partitions(recorded(suite, "partitions"))
    assert {p.name for p in partitions} == {"debug", "batch"}
    assert all(p.state == ("UP",) for p in partitions)


@pytest.mark.parametrize("suite", SUITES)
def test_the_recorded_idle_lab_is_one_group_all_free(suite: str) -> None:
    answer = recorded(suite, "nodes")
    nodes = read_nodes(answer)
    partitions = read_partitions(recorded(suite, "partitions"))
    raw = answer["nodes"]
    # the two lab nodes are alike, so they make one group
    (group,) = table(nodes, partitions)["groups"]
    assert group["nodes"] == ["n1", "n2"]
    assert group["node_count"] == 2
    assert group["cpus"] == raw[0]["cpus"]
    assert group["real_memory"] == raw[0]["real_memory"]
    assert group["total"] == {
        "cpus": sum(n["cpus"] for n in raw),
        "real_memory": sum(n["real_memory"] for n in raw),
        "gpus": 0,
    }
    assert group["partitions"] == ["batch", "debug"]
    totals = stats(nodes, partitions)
    assert totals["nodes"] == 2
    assert totals["cpus"] == sum(n["cpus"] for n in raw)
    assert totals["node_states"] == {"IDLE": 2}
    free = avail(nodes, select(nodes, partitions, None).up)
    assert free["total"]["idle_nodes"] == 2
    assert free["total"]["cpus"] == sum(n["alloc_idle_cpus"] for n in raw)
    assert free["total"]["real_memory"] == sum(
        n["real_memory"] - n["specialized_memory"] - n["alloc_memory"] for n in raw
    )


def _cluster() -> tuple[tuple[Node, ...], tuple[Partition, ...]]:
    """The forky recording, plus nodes derived from its n1 in every interesting state."""
    answer = recorded("forky-v0.0.45", "nodes")
    n1 = answer["nodes"][0]
    gpu = {"cpus": 32, "sockets": 2, "cores": 8, "threads": 2, "real_memory": 512000}
    answer["nodes"] += [
        # MIXED: 3 of 32 CPUs, 1000 of 512000 MiB and one of two H100s taken; 100 MiB specialized
        derived(
            n1, "g1", **gpu, state=["MIXED"], alloc_cpus=3, alloc_idle_cpus=29,
            alloc_memory=1000, specialized_memory=100, partitions=["gpu"],
            gres="gpu:h100:2(S:0-1),gpu:h200:4", gres_used="gpu:h100:1(IDX:0),gpu:h200:0(IDX:N/A)",
        ),
        # same hardware, idle and finishing a job: available
        derived(
            n1, "g2", **gpu, state=["IDLE", "COMPLETING"], partitions=["gpu"],
            gres="gpu:h100:2(S:0-1),gpu:h200:4",
            gres_used="gpu:h100:0(IDX:N/A),gpu:h200:0(IDX:N/A)",
        ),
        # same hardware, drained: counted in the table, never free
        derived(
            n1, "g10", **gpu, state=["IDLE", "DRAIN"], partitions=["gpu"],
            gres="gpu:h100:2,gpu:h200:4", gres_used="gpu:h100:0,gpu:h200:0",
        ),
        # same hardware, all taken
        derived(
            n1, "g3", **gpu, state=["ALLOCATED"], alloc_cpus=32, alloc_memory=512000,
            partitions=["gpu"], gres="gpu:h100:2,gpu:h200:4",
            gres_used="gpu:h100:2(IDX:0-1),gpu:h200:4(IDX:2-5)",
        ),
        # untyped GPUs, reserved for someone
        derived(n1, "u1", state=["IDLE", "RESERVED"], gres="gpu:4", gres_used="gpu:0"),
        # down
        derived(n1, "n3", state=["DOWN", "NOT_RESPONDING"]),
        # idle, but only in a partition that is down
        derived(n1, "n4", partitions=["closed"], features=["big", "avx512"]),
    ]  # fmt: skip
    parts = recorded("forky-v0.0.45", "partitions")
    template = parts["partitions"][0]
    parts["partitions"] += [
        {**copy.deepcopy(template), "name": "gpu"},
        {**copy.deepcopy(template), "name": "closed", "partition": {"state": ["DOWN"]}},
    ]
    return read_nodes(answer), read_partitions(parts)


def test_groups_are_made_by_hardware_and_list_their_partitions() -> None:
    nodes, partitions = _cluster()
    groups = {tuple(g["nodes"]): g for g in table(nodes, partitions)["groups"]}
    # natural order (g10 after g3); u1's untyped GPUs and n4's features make groups of their own
    assert list(groups) == [("g1", "g2", "g3", "g10"), ("n1", "n2", "n3"), ("n4",), ("u1",)]
    gpu = groups["g1", "g2", "g3", "g10"]
    assert gpu["gpus"] == [{"type": "h100", "count": 2}, {"type": "h200", "count": 4}]
    assert gpu["gpus_per_node"] == 6
    assert (gpu["cpus"], gpu["sockets"], gpu["cores_per_socket"], gpu["threads_per_core"]) == (
        32,
        2,
        8,
        2,
    )
    assert gpu["total"] == {"cpus": 128, "real_memory": 2048000, "gpus": 24}
    assert gpu["partitions"] == ["gpu"]
    assert groups["n1", "n2", "n3"]["gpus"] == []
    assert groups["u1",]["gpus"] == [{"type": None, "count": 4}]
    assert groups["n4",]["features"] == ["avx512", "big"]
    assert groups["n4",]["partitions"] == ["closed"]
    listed = {p["name"]: p for p in table(nodes, partitions)["partitions"]}
    assert listed["gpu"]["node_count"] == 4
    assert listed["gpu"]["gpus"] == 24
    assert listed["closed"]["state"] == ["DOWN"]


def test_stats_count_everything_and_what_jobs_hold() -> None:
    nodes, partitions = _cluster()
    result = stats(nodes, partitions)
    assert result["nodes"] == 9
    assert result["cpus"] == 5 * 4 + 4 * 32
    assert result["gpus"] == 4 * 6 + 4
    assert result["gpus_by_type"] == [
        {"type": None, "count": 4},
        {"type": "h100", "count": 8},
        {"type": "h200", "count": 16},
    ]
    assert result["allocated"] == {"cpus": 3 + 32, "real_memory": 1000 + 512000, "gpus": 1 + 6}
    assert result["node_states"] == {"ALLOCATED": 1, "DOWN": 1, "IDLE": 6, "MIXED": 1}
    assert result["node_flags"] == {
        "COMPLETING": 1,
        "DRAIN": 1,
        "NOT_RESPONDING": 1,
        "RESERVED": 1,
    }
    assert result["partitions"] == 4


def test_avail_counts_only_nodes_new_jobs_can_use_now() -> None:
    nodes, partitions = _cluster()
    up = select(nodes, partitions, None).up
    assert up == {"debug", "batch", "gpu"}
    result = avail(nodes, up)
    # the groups of the table, in its order
    assert [g["node_count"] for g in result["groups"]] == [4, 3, 1, 1]
    gpu, plain, closed, reserved = result["groups"]
    assert gpu["available_nodes"] == ["g1", "g2"]  # not g10 (DRAIN) nor g3 (ALLOCATED)
    assert (gpu["idle_nodes"], gpu["mixed_nodes"]) == (1, 1)
    assert gpu["free"] == {
        "cpus": 29 + 32,
        "real_memory": (512000 - 100 - 1000) + 512000,
        "gpus": 1 + 4 + 2 + 4,
        "gpus_by_type": [{"type": "h100", "count": 3}, {"type": "h200", "count": 8}],
    }
    assert gpu["largest_free"] == {"cpus": 32, "real_memory": 512000, "gpus": 6}
    # n3 is down, u1 reserved; n4's only partition is down
    assert plain["available_nodes"] == ["n1", "n2"]
    assert plain["free"]["cpus"] == 8
    assert closed["available_nodes"] == reserved["available_nodes"] == []
    assert closed["free"] == {"cpus": 0, "real_memory": 0, "gpus": 0, "gpus_by_type": []}
    assert result["total"] == {
        "idle_nodes": 3,
        "mixed_nodes": 1,
        "cpus": 29 + 32 + 8,
        "real_memory": (512000 - 100 - 1000) + 512000 + 8000,
        "gpus": 11,
    }


def test_a_partition_filter_keeps_its_nodes_and_its_state() -> None:
    nodes, partitions = _cluster()
    gpu = select(nodes, partitions, "gpu")
    assert sorted(n.name for n in gpu.nodes) == ["g1", "g10", "g2", "g3"]
    assert [p.name for p in gpu.partitions] == ["gpu"]
    assert stats(gpu.nodes, gpu.partitions)["partitions"] == 1
    closed = select(nodes, partitions, "closed")
    assert avail(closed.nodes, closed.up)["total"]["idle_nodes"] == 0
    with pytest.raises(UnknownPartition, match="no partition 'nope'; partitions: batch, closed"):
        select(nodes, partitions, "nope")


@pytest.mark.parametrize(
    ("state", "free"),
    [
        (["IDLE"], True),
        (["MIXED"], True),
        (["IDLE", "COMPLETING"], True),
        (["ALLOCATED"], False),
        (["IDLE", "DRAIN"], False),
        (["MIXED", "DRAIN"], False),
        (["IDLE", "PLANNED"], False),
        (["IDLE", "POWERED_DOWN"], False),
        (["IDLE", "MAINTENANCE"], False),
        (["IDLE", "REBOOT_REQUESTED"], False),
        (["IDLE", "A_FLAG_OF_SLURM_27"], False),  # unknown flags fail closed
        (["DOWN"], False),
        ([], False),
    ],
)
def test_availability_by_state(state: list[str], free: bool) -> None:
    (node,) = read_nodes({"nodes": [{"name": "x", "state": state, "partitions": ["p"]}]})
    assert available(node, frozenset({"p"})) is free
    assert not available(node, frozenset({"other"}))
    assert base_state(node) == (state[0] if state else "UNKNOWN")
    assert "DRAIN" not in HARMLESS_FLAGS


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({}, "no list of nodes"),
        ({"nodes": [{}]}, "node 0 has no name"),
        ({"nodes": [{"name": "a", "cpus": "4"}]}, "node a: cpus is '4', not a number"),
        ({"nodes": [{"name": "a", "cpus": True}]}, "node a: cpus is True"),
        ({"nodes": [{"name": "a", "features": 3}]}, "node a: features is 3"),
        ({"nodes": [{"name": "a", "gres": "gpu:x"}]}, "node a: GRES entry 'gpu:x' has no count"),
    ],
)
def test_an_answer_of_another_shape_is_refused_by_name(
    answer: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnreadableAnswer, match=message):
        read_nodes(answer)


def test_numbers_in_slurmrestds_optional_form_and_csv_strings() -> None:
    (node,) = read_nodes(
        {
            "nodes": [
                {
                    "name": "a",
                    "cpus": {"set": True, "infinite": False, "number": 8},
                    "alloc_memory": {"set": False, "infinite": False, "number": 5},
                    "features": "b,a, c",
                    "partitions": "p",
                    "state": "idle",
                }
            ]
        }
    )
    assert (node.cpus, node.alloc_memory) == (8, 0)
    assert node.features == ("a", "b", "c")
    assert node.partitions == ("p",)
    assert node.state == ("IDLE",)
