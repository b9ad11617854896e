"""Cache keys: equal requests share one, different ones never do."""

from __future__ import annotations

import pytest

from slurmgate.server.cache.keys import KeySpace, has_update_time, key_material, normalize_query


def test_query_sorted_by_name_same_names_keep_order() -> None:
    assert normalize_query("b=2&a=1&b=1") == "a=1&b=2&b=1"
    assert normalize_query("") == ""
    assert normalize_query("&&a=1&") == "a=1"


def test_query_bytes_are_not_decoded() -> None:
    # slurmrestd might read these differently; they must not share an entry
    assert key_material("/p?x=a%20b", "", None) != key_material("/p?x=a+b", "", None)
    assert key_material("/p?x=%41", "", None) != key_material("/p?x=A", "", None)


def test_material_parts() -> None:
    a = key_material("/slurm/v0.0.45/jobs?b=1&a=2", "Application/JSON", None)
    assert a == "/slurm/v0.0.45/jobs?a=2&b=1\napplication/json"
    assert key_material("/slurm/v0.0.45/jobs", "", "alice").endswith("\nalice")
    assert key_material("/slurm/v0.0.45/jobs/?a=1", "", None) == key_material(
        "/slurm/v0.0.45/jobs?a=1", "", None
    )
    assert key_material("/p", "", "alice") != key_material("/p", "", "bob")
    assert key_material("/p", "application/json", None) != key_material(
        "/p", "application/yaml", None
    )
    # slurmrestd answers JSON for all of these: one entry
    json_alike = ("", "*/*", "application/json", "Application/JSON; q=0.9, */*;q=0.1")
    assert len({key_material("/p", accept, None) for accept in json_alike}) == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("update_time=5", True),
        ("flags=DETAIL&update_time=5", True),
        ("update%5Ftime=5", True),
        ("UPDATE_TIME=5", True),
        ("update_time", True),
        ("flags=update_time", False),
        ("", False),
        ("update_times=1", False),
    ],
)
def test_update_time(query: str, expected: bool) -> None:
    assert has_update_time(query) is expected


def test_key_space() -> None:
    keys = KeySpace("site-a")
    entry = keys.entry("/p")
    assert entry.startswith("site-a:1:entry:")
    assert len(entry) == len("site-a:1:entry:") + 64
    assert keys.entry("/p") == entry != keys.entry("/q")
    assert keys.generation("jobs") == "site-a:1:generation:jobs"
    assert keys.lock(entry) == entry.replace(":entry:", ":lock:")
    assert KeySpace("site-b").entry("/p") != entry
