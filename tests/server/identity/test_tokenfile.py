"""The tokens file format: every problem reported with file, entry and key; written back stably."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import timedelta

import pytest

from slurmgate.server.errors import ConfigError
from slurmgate.server.identity.tokenfile import parse_tokens, render_tokens
from tests.server.identity.factory import NOW, make_entry

DIGEST = "sha256:" + "ab" * 32
SCOPES = {"slurm:read", "slurm:jobs:manage"}

GOOD = f"""
[[token]]
name = "ci-alice"
user = "alice"
scopes = ["slurm:read", "slurm:jobs:manage"]
accounts = ["^physics$", "chem-.*"]
networks = ["10.0.0.0/8", "2001:db8::/32"]
created = 2026-01-01T00:00:00Z
expires = 2026-12-31T23:00:00+01:00
comment = "CI of the physics group"
digest = "{DIGEST}"

[[token]]
name = "old"
user = "bob"
scopes = []
accounts = []
created = 2025-01-01T00:00:00Z
revoked = 2025-06-01T00:00:00Z
digest = "{DIGEST}"
"""


def test_a_good_file_loads_every_key() -> None:
    alice, old = parse_tokens(GOOD, origin="tokens.toml", known_scopes=SCOPES)
    assert alice.name == "ci-alice"
    assert alice.user == "alice"
    assert alice.scopes == ("slurm:read", "slurm:jobs:manage")
    assert [p.pattern for p in alice.accounts] == ["^physics$", "chem-.*"]
    assert alice.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert alice.expires is not None
    assert alice.expires.isoformat() == "2026-12-31T22:00:00+00:00"
    assert alice.comment == "CI of the physics group"
    assert alice.identity.user == "alice"
    assert alice.identity.method == "token"
    assert alice.identity.name == "ci-alice"
    assert alice.identity.scopes == frozenset(SCOPES)
    assert old.networks == ()
    assert old.revoked is not None
    assert old.identity.scopes == frozenset()


def test_an_empty_file_has_no_entries() -> None:
    assert parse_tokens("", origin="tokens.toml") == ()


def test_every_problem_is_reported_with_file_entry_and_key() -> None:
    text = f"""
version = 2

[[token]]
name = "bad name"
user = "alice\\nX-Evil: 1"
scopes = ["slurm:read", "slurm:everything"]
accounts = ["(unclosed"]
networks = ["10.0.0.1/8", "not-a-net"]
created = 2026-01-01T00:00:00
expires = 2026-01-01
digest = "s3cr3t"
colour = "blue"

[[token]]
name = "twin"
user = "bob"
scopes = "slurm:read"
accounts = []
created = 2026-01-01T00:00:00Z
digest = "{DIGEST}"

[[token]]
name = "twin"
user = "bob"
scopes = []
accounts = []
created = 2026-01-01T00:00:00Z
digest = "{DIGEST}"

[[token]]
user = "carol"
"""
    with pytest.raises(ConfigError) as caught:
        parse_tokens(text, origin="/etc/slurmgate/tokens.toml", known_scopes=SCOPES)
    problems = caught.value.problems
    first = "/etc/slurmgate/tokens.toml: [[token]] #1 'bad name'"
    expected = [
        "/etc/slurmgate/tokens.toml: version: unknown top-level key",
        f"{first}: colour: unknown key",
        f"{first}: name: 'bad name' does not match",
        f"{first}: user: 'alice\\nX-Evil: 1' does not match",
        f"{first}: digest: 's3cr3t' does not match",
        f"{first}: scopes: unknown scope 'slurm:everything'",
        f"{first}: accounts: accounts[0] '(unclosed' is not a regular expression",
        f"{first}: networks: '10.0.0.1/8' is not a CIDR network",
        f"{first}: networks: 'not-a-net' is not a CIDR network",
        f"{first}: created: must be a TOML date-time with an offset",
        f"{first}: expires: must be a TOML date-time with an offset",
        "/etc/slurmgate/tokens.toml: [[token]] #2 'twin': scopes: must be a list of strings",
        "/etc/slurmgate/tokens.toml: [[token]] #3 'twin': name: 'twin' is already the name of "
        "[[token]] #2",
        "/etc/slurmgate/tokens.toml: [[token]] #4: name: missing",
        "/etc/slurmgate/tokens.toml: [[token]] #4: digest: missing",
        "/etc/slurmgate/tokens.toml: [[token]] #4: scopes: missing (use [] for none)",
        "/etc/slurmgate/tokens.toml: [[token]] #4: accounts: missing (use [] for none)",
        "/etc/slurmgate/tokens.toml: [[token]] #4: created: missing",
    ]
    for line in expected:
        assert any(problem.startswith(line) for problem in problems), (line, problems)
    assert len(problems) == len(expected)


def test_not_toml_and_not_tables() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens("[[token]\n", origin="t.toml")
    assert caught.value.problems[0].startswith("t.toml: not valid TOML")
    with pytest.raises(ConfigError) as caught:
        parse_tokens('token = "x"', origin="t.toml")
    assert caught.value.problems == ["t.toml: token: must be an array of tables [[token]]"]


def test_scopes_are_checked_only_when_known_scopes_are_given() -> None:
    text = GOOD.replace('"slurm:jobs:manage"', '"slurm:future:scope"')
    assert len(parse_tokens(text, origin="t.toml")) == 2
    with pytest.raises(ConfigError):
        parse_tokens(text, origin="t.toml", known_scopes=SCOPES)


def test_status_follows_the_clock() -> None:
    _, entry = make_entry("a", expires=NOW + timedelta(days=1))
    assert entry.status(NOW) == "active"
    assert entry.status(NOW + timedelta(days=1)) == "expired"
    _, scheduled = make_entry("b", revoked=NOW + timedelta(hours=1))
    assert scheduled.status(NOW) == "active"
    assert scheduled.status(NOW + timedelta(hours=1)) == "revoked"
    _, both = make_entry("c", expires=NOW, revoked=NOW)
    assert both.status(NOW) == "revoked"


def test_networks_match_v4_v6_and_mapped_addresses() -> None:
    _, entry = make_entry("n", networks=("10.0.0.0/8", "2001:db8::/32"))
    assert entry.allows(ipaddress.ip_address("10.1.2.3"))
    assert entry.allows(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert entry.allows(ipaddress.ip_address("2001:db8::1"))
    assert not entry.allows(ipaddress.ip_address("192.168.0.1"))
    assert not entry.allows(None)
    _, anywhere = make_entry("m")
    assert anywhere.allows(None)
    assert anywhere.allows(ipaddress.ip_address("192.168.0.1"))


def test_render_reads_back_the_same_entries() -> None:
    entries = parse_tokens(GOOD, origin="t.toml")
    _, tricky = make_entry("tricky", user="x$", accounts=(r'a"b\d+', "\t"))
    tricky = dataclasses.replace(tricky, comment='quote " backslash \\ newline \n del \x7f é')
    text = render_tokens([*entries, tricky])
    again = parse_tokens(text, origin="t.toml")
    assert again == (*entries, tricky)
    assert render_tokens(again) == text
    assert text.endswith("\n")


def test_an_entrys_repr_does_not_show_its_digest() -> None:
    _, entry = make_entry("ci-alice")
    assert entry.digest.removeprefix("sha256:") not in repr(entry)
    assert repr(entry).startswith("TokenEntry(name='ci-alice', user='alice'")
