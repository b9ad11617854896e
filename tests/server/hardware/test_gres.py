"""GPUs out of GRES strings, in the forms slurmctld writes (Slurm 24.05 to 26.05)."""

from __future__ import annotations

import pytest

from slurmgate.server.hardware.gres import UNTYPED, gpus, gpus_total


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("(null)", {}),
        ("gpu:4", {UNTYPED: 4}),
        ("gpu:0", {UNTYPED: 0}),
        ("gpu:h100:4", {"h100": 4}),
        ("gpu:h100:2,gpu:h200:4", {"h100": 2, "h200": 4}),
        ("gpu:a100:4(S:0-1)", {"a100": 4}),
        ("gpu:a100:2(S:0,2),gpu:v100:1(S:1)", {"a100": 2, "v100": 1}),
        ("gpu:h100:2(IDX:0-1),gpu:h200:0(IDX:N/A)", {"h100": 2, "h200": 0}),
        ("gpu:h100:0(IDX:N/A)", {"h100": 0}),
        ("shard:8,gpu:l4:1,mps:100", {"l4": 1}),
        ("gpu:a100:no_consume:2", {"a100": 2}),
        ("gpu:1k", {UNTYPED: 1024}),
        ("gpu:a:1,gpu:a:2", {"a": 3}),
    ],
)
def test_gpus_per_type(text: str, expected: dict[str, int]) -> None:
    assert gpus(text) == expected
    assert gpus_total(gpus(text)) == sum(expected.values())


@pytest.mark.parametrize("text", ["gpu", "gpu:h100", "gpu:h100:x", "gpu:a:b:2"])
def test_an_unreadable_gpu_entry_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="GRES entry"):
        gpus(text)


def test_other_gres_never_matter_even_when_odd() -> None:
    assert gpus("bandwidth:lustre:no_consume:4G,nic") == {}
