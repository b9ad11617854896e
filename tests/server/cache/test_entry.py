"""The stored envelope: round trip, and refusal of anything else."""

from __future__ import annotations

import pytest

from slurmgate.server.cache.entry import Entry, decode, encode


def entry(body: bytes = b'{"jobs": []}') -> Entry:
    return Entry(
        what="/slurm/v0.0.45/jobs\napplication/json",
        generation="ab12",
        generated_at=1000.5,
        upstream_seconds=0.25,
        stale_at=1002.0,
        status=200,
        reason="OK",
        headers=(("Content-Type", "application/json"), ("X-Other", "é")),
        body=body,
    )


def test_round_trip_keeps_every_byte_and_field() -> None:
    body = bytes(range(256)) * 10  # the upstream's bytes, whatever they are
    original = entry(body)
    assert decode(encode(original)) == original


def test_age_and_lifetime() -> None:
    e = entry()
    assert e.lifetime == 1.5
    assert e.age(1001.5) == 1.0
    assert e.age(900.0) == 0.0  # a clock that went back never gives a negative Age


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"pickle\x80\x04",
        b"SGC2\n\x00\x00\x00\x02{}",
        b"SGC1\n\x00\x00",
        b"SGC1\n\x00\x00\x01\x00{}",
    ],
    ids=["empty", "other", "other-format", "short-length", "truncated-head"],
)
def test_not_an_entry(data: bytes) -> None:
    with pytest.raises(ValueError, match="entry"):
        decode(data)


def test_header_missing_a_field() -> None:
    data = encode(entry())
    broken = data.replace(b'"status":200,', b"")
    # the length prefix still says the old length: fix it up to isolate the missing field
    head_len = int.from_bytes(data[5:9], "big") - len(b'"status":200,')
    broken = broken[:5] + head_len.to_bytes(4, "big") + broken[9:]
    with pytest.raises(ValueError, match="status"):
        decode(broken)
