"""The lab tests' own reading of sacct and sreport output (tests/server/usage/slurm_tools.py)."""

from __future__ import annotations

import pytest

from tests.server.usage.slurm_tools import parse_alloc_tres, read_sacct, read_sreport, sums


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("billing=2,cpu=2,node=1", {"billing": 2, "cpu": 2, "node": 1}),
        ("cpu=4,mem=4000M,node=1", {"cpu": 4, "mem": 4000, "node": 1}),
        ("cpu=4,mem=4G,node=1", {"cpu": 4, "mem": 4096, "node": 1}),
        ("mem=1.5G", {"mem": 1536}),
        ("mem=2T", {"mem": 2 * 1024 * 1024}),
        ("mem=512K", {"mem": 0}),
        ("mem=100", {"mem": 100}),
        ("cpu=8,gres/gpu=2,gres/gpu:h100=2,node=1", {"cpu": 8, "gres/gpu": 2, "node": 1}),
        ("energy=12,fs/disk=100", {}),
        ("", {}),
    ],
)
def test_alloc_tres(text: str, counts: dict[str, int]) -> None:
    assert parse_alloc_tres(text) == counts


def test_bad_memory_is_refused() -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_alloc_tres("mem=lots")


SACCT = """\
10|forky|physics|alice|2026-11-21T11:00:00|2026-11-21T11:00:40|COMPLETED|billing=2,cpu=2,node=1
11|forky|chem|bob|2026-11-21T11:00:00|Unknown|RUNNING|billing=1,cpu=1,mem=1G,node=1
12|forky|chem|bob|None|2026-11-21T11:00:05|CANCELLED by 0|billing=1,cpu=1,node=1
13|forky|chem|carol|2026-11-21T11:00:50|2026-11-21T11:00:50|FAILED|billing=1,cpu=1,node=1
"""
ELEVEN = 1795258800  # 2026-11-21T11:00:00Z


def test_sacct_lines_and_sums_over_a_window() -> None:
    jobs = read_sacct(SACCT)
    assert [(j.job_id, j.start, j.end) for j in jobs] == [
        ("10", ELEVEN, ELEVEN + 40),
        ("11", ELEVEN, None),
        ("12", None, ELEVEN + 5),
        ("13", ELEVEN + 50, ELEVEN + 50),
    ]
    found = sums(jobs, ELEVEN + 30, ELEVEN + 60, ELEVEN + 55, ("account",))
    assert found[("physics",)].seconds["cpu"] == 2 * 10
    assert found[("chem",)].jobs == 2  # the running job up to now, the one of no time
    assert found[("chem",)].seconds["cpu"] == 25
    assert found[("chem",)].seconds["mem"] == 1024 * 25


def test_sreport_rows() -> None:
    text = "forky|root|||cpu|10\nforky|physics|||cpu|7\nforky|physics|alice|Alice|cpu|7\n"
    assert read_sreport(text) == {
        ("root", ""): {"cpu": 10},
        ("physics", ""): {"cpu": 7},
        ("physics", "alice"): {"cpu": 7},
    }
