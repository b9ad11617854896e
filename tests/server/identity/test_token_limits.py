"""A token's own rate limit: ``rate`` and ``burst`` in the tokens file, ``--rate`` and ``--burst``
of ``slurmgate token create``, shown by ``list --json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from slurmgate.server.errors import ConfigError
from slurmgate.server.identity.tokenfile import parse_tokens, render_tokens
from tests.server.test_token_cli import run

DIGEST = "sha256:" + "ab" * 32


def entry(extra: str) -> str:
    return (
        f'[[token]]\nname = "ci"\nuser = "alice"\nscopes = []\naccounts = []\n'
        f'created = 2026-01-01T00:00:00Z\ndigest = "{DIGEST}"\n{extra}'
    )


@pytest.mark.parametrize(
    ("extra", "rate", "burst"),
    [
        ("", None, None),
        ("rate = 2.5\n", 2.5, None),
        ("rate = 10\nburst = 40\n", 10.0, 40),
        ("burst = 7\n", None, 7),
        ("rate = inf\n", math.inf, None),
    ],
)
def test_rate_and_burst_are_read_and_written_back(
    extra: str, rate: float | None, burst: int | None
) -> None:
    (token,) = parse_tokens(entry(extra), origin="t")
    assert (token.rate, token.burst) == (rate, burst)
    assert (token.identity.rate, token.identity.burst) == (rate, burst)
    (again,) = parse_tokens(render_tokens([token]), origin="t")
    assert again == token


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("rate = 0\n", "rate: must be a number of requests per second above 0 (inf: no limit)"),
        ("rate = -1.5\n", "rate: must be a number"),
        ("rate = nan\n", "rate: must be a number"),
        ('rate = "10"\n', "rate: must be a number"),
        ("rate = true\n", "rate: must be a number"),
        ("burst = 0\n", "burst: must be an integer from 1 to 1048576"),
        ("burst = 2.5\n", "burst: must be an integer"),
        ("burst = 99999999\n", "burst: must be an integer"),
    ],
)
def test_bad_rates_and_bursts_name_the_entry_and_the_key(extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens(entry(extra), origin="tokens.toml")
    (message,) = caught.value.problems
    assert message.startswith("tokens.toml: [[token]] #1 'ci': ")
    assert problem in message


def test_create_with_a_rate_and_list_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    common = ("token", "create", "--tokens-file", str(path), "--scope", "slurm:read")
    assert run(*common, "--user", "alice", "--name", "a", "--rate", "0.5", "--burst", "5")[0] == 0
    assert run(*common, "--user", "bob", "--name", "b", "--rate", "inf")[0] == 0
    assert run(*common, "--user", "carol", "--name", "c")[0] == 0
    a, b, c = parse_tokens(path.read_text(), origin="t")
    assert (a.rate, a.burst, b.rate, b.burst, c.rate, c.burst) == (
        0.5,
        5,
        math.inf,
        None,
        None,
        None,
    )
    status, out = run("token", "list", "--json", "--tokens-file", str(path))
    assert status == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["rate"], r["burst"]) for r in rows] == [(0.5, 5), ("inf", None), (None, None)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--rate", "0"), "--rate '0': requests per second above 0, or inf"),
        (("--rate", "fast"), "--rate 'fast'"),
        (("--rate", "nan"), "--rate 'nan'"),
        (("--burst", "0"), "--burst '0': an integer from 1 to 1048576"),
        (("--burst", "1.5"), "--burst '1.5'"),
    ],
)
def test_create_refuses_bad_limits_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "tokens.toml"
    status, out = run(
        "token", "create", "--tokens-file", str(path), "--user", "alice",
        "--scope", "slurm:read", *extra,
    )  # fmt: skip
    assert (status, out) == (2, "")
    assert message in capsys.readouterr().err
    assert not path.exists()
