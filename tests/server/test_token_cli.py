"""``slurmgate token create | list | revoke``: the secret printed once, the file, locking."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from slurmgate.generated import ROUTES
from slurmgate.server.cli import token as token_cli
from slurmgate.server.identity.secret import NO_EXPIRY
from slurmgate.server.identity.tokenfile import TokenEntry, parse_tokens
from slurmgate.server.identity.tokens import TokenStore
from tests.server.identity.factory import make_entry, write_tokens

WAIT = 10  # seconds: a bound on waiting for threads, never a sleep


def run(*argv: str) -> tuple[int, str]:
    """Run ``slurmgate <argv>`` with a parser holding only the token commands."""
    parser = argparse.ArgumentParser(prog="slurmgate")
    token_cli.register(parser.add_subparsers(dest="name", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    status: int = args.command(args, out)
    return status, out.getvalue()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tokens.toml"


def create(path: Path, *extra: str, user: str = "alice") -> str:
    status, out = run(
        "token", "create", "--tokens-file", str(path), "--user", user, "--scope", "slurm:read",
        *extra,
    )  # fmt: skip
    assert status == 0
    return out


def test_create_prints_only_the_secret_and_stores_only_its_digest(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    out = create(
        path, "--scope", "slurm:jobs:manage", "--account", "^physics$", "--expires", "30d",
        "--network", "10.0.0.0/8", "--name", "ci-alice", "--comment", "physics CI",
    )  # fmt: skip
    after = datetime.now(UTC)
    assert out.endswith("\n")
    assert out.count("\n") == 1
    secret = out.strip()
    claims = jwt.decode(secret, options={"verify_signature": False})
    assert jwt.get_unverified_header(secret)["alg"] == "HS256"
    assert claims["sun"] == "alice"
    assert claims["jti"] == "ci-alice"
    assert before.timestamp() <= claims["iat"] <= after.timestamp()
    assert claims["exp"] == claims["iat"] + 30 * 86400
    assert "ci-alice" in capsys.readouterr().err

    text = path.read_text()
    assert secret not in text
    assert secret.split(".")[2] not in text
    (entry,) = parse_tokens(text, origin=str(path))
    assert entry.digest == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert entry.scopes == ("slurm:read", "slurm:jobs:manage")
    assert [p.pattern for p in entry.accounts] == ["^physics$"]
    assert [str(n) for n in entry.networks] == ["10.0.0.0/8"]
    assert entry.expires is not None
    assert int(entry.expires.timestamp()) == claims["exp"]
    assert entry.comment == "physics CI"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.toml", "tokens.toml.lock"]

    # The gateway accepts it, as alice, from the token's network only.
    store = TokenStore(path)
    assert store.verify(secret, "10.9.8.7").user == "alice"


def test_create_without_expiry_and_name(path: Path) -> None:
    secret = create(path, user="bob").strip()
    claims = jwt.decode(secret, options={"verify_signature": False})
    assert claims["exp"] == int(NO_EXPIRY.timestamp())
    assert claims["jti"].startswith("bob-")
    (entry,) = parse_tokens(path.read_text(), origin="t")
    assert entry.name == claims["jti"]
    assert entry.expires is None


def test_expires_accepts_a_date_time_with_offset(path: Path) -> None:
    secret = create(path, "--expires", "2099-01-31T12:00:00+01:00").strip()
    claims = jwt.decode(secret, options={"verify_signature": False})
    assert claims["exp"] == int(datetime(2099, 1, 31, 11, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--scope", "slurm:everything"), "--scope 'slurm:everything' is not a scope; known:"),
        (("--account", "(physics"), "--account: accounts[0] '(physics' is not a regular"),
        (("--network", "10.0.0.1/8"), "--network '10.0.0.1/8': 10.0.0.1/8 has host bits set"),
        (("--expires", "soon"), "--expires 'soon': expected a duration"),
        (("--expires", "2020-01-01T00:00:00Z"), "is in the past"),
        (("--expires", "2099-01-01T00:00:00"), "needs an offset"),
        (("--name", "a b"), "--name 'a b' must match"),
        (("--user", "al ice"), "--user 'al ice' is not a user name"),
    ],
)
def test_create_refuses_bad_arguments_and_writes_nothing(
    path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    status, out = run(
        "token", "create", "--tokens-file", str(path), "--user", "alice",
        "--scope", "slurm:read", *extra,
    )  # fmt: skip
    assert (status, out) == (2, "")
    assert message in capsys.readouterr().err
    assert not path.exists()


def test_names_are_unique(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create(path, "--name", "dup")
    before = path.read_text()
    status, out = run(
        "token", "create", "--tokens-file", str(path), "--user", "bob",
        "--scope", "slurm:read", "--name", "dup",
    )  # fmt: skip
    assert (status, out) == (1, "")
    assert "a token named 'dup' exists already" in capsys.readouterr().err
    assert path.read_text() == before


def test_a_broken_file_is_not_edited(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path.write_text('[[token]]\nname = "x"\n')
    status, out = run(
        "token", "create", "--tokens-file", str(path), "--user", "bob", "--scope", "slurm:read"
    )
    assert (status, out) == (1, "")
    assert f"{path}: [[token]] #1 'x': user: missing" in capsys.readouterr().err
    assert path.read_text() == '[[token]]\nname = "x"\n'


def test_list_shows_status_and_never_digests(path: Path) -> None:
    now = datetime.now(UTC)
    _, active = make_entry("active", networks=("10.0.0.0/8",), accounts=("^physics$",))
    _, expired = make_entry("expired", "bob", expires=now - timedelta(days=1))
    _, revoked = make_entry("revoked", "carol", revoked=now - timedelta(hours=1))
    write_tokens(path, active, expired, revoked)
    status, out = run("token", "list", "--tokens-file", str(path))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "USER",
        "STATUS",
        "EXPIRES",
        "SCOPES",
        "ACCOUNTS",
        "NETWORKS",
    ]
    assert lines[1].split() == [
        "active",
        "alice",
        "active",
        "never",
        "slurm:read",
        "^physics$",
        "10.0.0.0/8",
    ]
    assert lines[2].split()[:3] == ["expired", "bob", "expired"]
    assert lines[3].split()[:3] == ["revoked", "carol", "revoked"]
    status, out = run("token", "list", "--json", "--tokens-file", str(path))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [
        ("active", "active"), ("expired", "expired"), ("revoked", "revoked"),
    ]  # fmt: skip
    assert rows[0]["networks"] == ["10.0.0.0/8"]
    assert rows[0]["revoked"] is None
    for entry in (active, expired, revoked):
        assert entry.digest not in out
        assert entry.digest.removeprefix("sha256:") not in out
    assert "digest" not in rows[0]


def test_list_of_a_file_not_created_yet_is_empty(path: Path) -> None:
    assert run("token", "list", "--json", "--tokens-file", str(path)) == (0, "")


def test_revoke_keeps_the_entry_and_the_gateway_refuses_it(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = create(path, "--name", "gone").strip()
    kept = create(path, "--name", "kept").strip()
    assert run("token", "revoke", "gone", "--tokens-file", str(path)) == (0, "")
    gone, other = parse_tokens(path.read_text(), origin="t")
    assert gone.revoked is not None
    assert other.revoked is None
    store = TokenStore(path)
    assert store.verify(kept, None).name == "kept"
    with pytest.raises(Exception, match="revoked"):
        store.verify(secret, None)
    # Again: nothing changes, the first revocation time stays.
    assert run("token", "revoke", "gone", "--tokens-file", str(path)) == (0, "")
    assert parse_tokens(path.read_text(), origin="t")[0].revoked == gone.revoked
    assert run("token", "revoke", "nobody", "--tokens-file", str(path)) == (1, "")
    assert "no token named 'nobody'" in capsys.readouterr().err


def test_the_tokens_file_comes_from_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "from-config.toml"
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        f"""
[upstream]
url = "http://127.0.0.1:6820"
[slurm_user_token]
jwt_key = "/etc/slurm/jwt_hs256.key"
[auth]
tokens_file = "{tokens}"
"""
    )
    status, _ = run(
        "token", "create", "--config", str(config), "--user", "alice", "--scope", "slurm:read"
    )
    assert status == 0
    monkeypatch.chdir(tmp_path)  # --config defaults to ./slurmgate.toml
    status, out = run("token", "list", "--json")
    assert status == 0
    assert json.loads(out)["user"] == "alice"
    config.write_text("[auth]\n")
    status, _ = run("token", "list")
    assert status == 1
    assert "slurmgate.toml: auth.tokens_file: Field required" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_rewrite_keeps_the_files_owner(path: Path) -> None:
    create(path)
    os.chown(path, 4321, 4321)
    create(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_writers_do_not_lose_entries(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = 8
    create(path, "--name", "first")
    waiting = threading.Semaphore(0)
    real_acquire = token_cli._acquire

    def announce_then_acquire(fd: int) -> None:
        waiting.release()
        real_acquire(fd)

    # The test holds the lock while every writer reaches it, so all of them contend at once.
    with token_cli._locked(path):
        monkeypatch.setattr(token_cli, "_acquire", announce_then_acquire)
        results: list[tuple[int, str]] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(create_quietly(path, f"w{i}")))
            for i in range(writers)
        ]
        for thread in threads:
            thread.start()
        for _ in range(writers):
            assert waiting.acquire(timeout=WAIT)
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert all(status == 0 for status, _ in results)
    names = [e.name for e in parse_tokens(path.read_text(), origin="t")]
    assert sorted(names) == sorted(["first", *(f"w{i}" for i in range(writers))])
    # Every printed secret works: no writer's entry was overwritten by another's.
    store = TokenStore(path)
    assert sorted(store.verify(out.strip(), None).name for _, out in results) == sorted(
        f"w{i}" for i in range(writers)
    )


def create_quietly(path: Path, name: str) -> tuple[int, str]:
    return run(
        "token", "create", "--tokens-file", str(path), "--user", "alice",
        "--scope", "slurm:read", "--name", name,
    )  # fmt: skip


def test_parse_expires_units() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert token_cli.parse_expires("90s", now) == now + timedelta(seconds=90)
    assert token_cli.parse_expires("15m", now) == now + timedelta(minutes=15)
    assert token_cli.parse_expires("12h", now) == now + timedelta(hours=12)
    assert token_cli.parse_expires("2w", now) == now + timedelta(weeks=2)
    for bad in ("0d", "-1d", "1y", "1.5d", "d"):
        with pytest.raises(ValueError, match="expected a duration"):
            token_cli.parse_expires(bad, now)


def test_dataclass_replace_keeps_identity_in_step() -> None:
    _, entry = make_entry("x", "alice")
    moved = dataclasses.replace(entry, user="bob")
    assert moved.identity.user == "bob"


# --- show ---------------------------------------------------------------------------------------


def shown_token(path: Path) -> TokenEntry:
    """physics-ci: two scopes, an account pattern, a network; written next to another token."""
    _, entry = make_entry(
        "physics-ci",
        scopes=("slurm:read", "slurm:jobs:manage"),
        accounts=("^physics$",),
        networks=("10.1.0.0/16",),
        expires=datetime(2099, 1, 1, tzinfo=UTC),
    )
    _, other = make_entry("other", "bob", scopes=("slurmdb:read",))
    write_tokens(path, other, entry)
    return entry


def section(lines: list[str], title: str, version: str = "v0.0.45") -> list[str]:
    """The lines of the ``allowed:`` or ``refused:`` part of one version's listing."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{version}: "))
    first = lines.index(f"  {title}:", start) + 1
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[first:end]


def test_show_prints_the_entry_and_what_each_scope_allows(path: Path) -> None:
    entry = shown_token(path)
    status, out = run("token", "show", "physics-ci", "--tokens-file", str(path))
    assert status == 0
    assert entry.digest.removeprefix("sha256:") not in out
    lines = out.splitlines()
    assert lines[:9] == [
        "token:    physics-ci",
        "user:     alice",
        "status:   active",
        "created:  2026-06-01T12:00:00Z",
        "expires:  2099-01-01T00:00:00Z",
        "revoked:  -",
        "networks: 10.1.0.0/16",
        "accounts: ^physics$ (full match)",
        "scopes:   slurm:read, slurm:jobs:manage",
    ]
    # Every generated version, each with every one of its operations exactly once.
    for version, routes in ROUTES.items():
        count = sum(1 for r in routes if r.scope in entry.scopes)
        assert f"{version}: {count} operations allowed, {len(routes) - count} refused" in lines
    allowed = section(lines, "allowed")
    # Grouped by scope, sorted; under each, method and path; account notes on account writes.
    assert [line.strip() for line in allowed if not line.startswith("      ")] == [
        "slurm:jobs:manage",
        "slurm:read",
    ]
    rows = [line.split() for line in allowed if line.startswith("      ")]
    assert ["POST", "/slurm/v0.0.45/job/submit", "(account", "patterns", "apply)"] in rows
    assert ["GET", "/slurm/v0.0.45/job/{job_id}/requeue", "(account", "patterns", "apply)"] in rows
    assert ["GET", "/slurm/v0.0.45/jobs/"] in rows  # a read: no note
    assert len(rows) == sum(1 for r in ROUTES["v0.0.45"] if r.scope in entry.scopes)
    refused = section(lines, "refused")
    assert "    slurm:reconfigure" in refused
    assert "      GET    /slurm/v0.0.45/reconfigure/" in refused
    assert "    slurm:read" not in refused
    assert not any("account patterns" in line for line in refused)


def test_show_one_version_as_json(path: Path) -> None:
    entry = shown_token(path)
    status, out = run(
        "token", "show", "physics-ci", "--version", "v0.0.44", "--json", "--tokens-file", str(path)
    )
    assert status == 0
    assert out.count("\n") == 1
    shown = json.loads(out)
    assert "digest" not in shown
    assert entry.digest not in out
    assert (shown["name"], shown["user"], shown["status"]) == ("physics-ci", "alice", "active")
    assert shown["scopes"] == ["slurm:read", "slurm:jobs:manage"]
    assert (shown["accounts"], shown["networks"]) == (["^physics$"], ["10.1.0.0/16"])
    assert list(shown["versions"]) == ["v0.0.44"]
    table = shown["versions"]["v0.0.44"]
    operations = {(op["method"], op["path"]): op for op in table["allowed"]}
    submit = operations["POST", "/slurm/v0.0.44/job/submit"]
    assert submit["scope"] == "slurm:jobs:manage"
    assert submit["operation"] == "slurm_v0044_post_job_submit"
    assert submit["notes"] == ["account patterns apply"]
    assert operations["GET", "/slurm/v0.0.44/nodes/"]["notes"] == []
    assert {op["scope"] for op in table["allowed"]} == {"slurm:read", "slurm:jobs:manage"}
    assert "slurm:read" not in {op["scope"] for op in table["refused"]}
    every = {(r.method, r.path) for r in ROUTES["v0.0.44"]}
    listed = [(op["method"], op["path"]) for op in table["allowed"] + table["refused"]]
    assert sorted(listed) == sorted(every)


def test_show_says_when_the_gateway_refuses_the_token_anyway(path: Path) -> None:
    _, gone = make_entry("gone", revoked=datetime.now(UTC) - timedelta(hours=1))
    _, free = make_entry("free", scopes=("slurm:jobs:manage",))
    write_tokens(path, gone, free)
    _, out = run("token", "show", "gone", "--version", "v0.0.45", "--tokens-file", str(path))
    assert "status:   revoked: the gateway refuses it;" in out
    _, out = run("token", "show", "free", "--version", "v0.0.45", "--tokens-file", str(path))
    assert "accounts: * (no restriction by account)" in out
    assert "account patterns apply" not in out  # no patterns: nothing more is checked


def test_show_an_unknown_name_or_version_is_exit_2(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shown_token(path)
    assert run("token", "show", "nobody", "--tokens-file", str(path)) == (2, "")
    err = capsys.readouterr().err
    assert f"slurmgate token show: {path}: no token named 'nobody'" in err
    assert run(
        "token", "show", "physics-ci", "--version", "v0.0.39", "--tokens-file", str(path)
    ) == (
        2,
        "",
    )
    assert "unknown API version 'v0.0.39'; supported: v0.0.40" in capsys.readouterr().err
    assert run("token", "show", "x", "--tokens-file", str(path.with_name("none.toml")))[0] == 2


def test_show_with_the_configuration_names_group_and_network_requirements(
    tmp_path: Path, path: Path
) -> None:
    shown_token(path)
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        f"""
[upstream]
url = "http://127.0.0.1:6820"
[slurm_user_token]
jwt_key = "/etc/slurm/jwt_hs256.key"
[auth]
tokens_file = "{path}"
[[authorization.require]]
scopes = ["slurm:jobs:manage"]
groups = ["hpc", "ops"]
[[authorization.require]]
operations = ["slurm_v0045_post_job_submit"]
networks = ["10.0.0.0/8", "192.168.0.0/16"]
"""
    )
    status, out = run(
        "token", "show", "physics-ci", "--version", "v0.0.45", "--config", str(config)
    )
    assert status == 0
    rows = {" ".join(line.split()[:2]): line for line in out.splitlines()}
    assert rows["POST /slurm/v0.0.45/job/submit"].endswith(
        "(account patterns apply; requires group hpc or ops (authorization.require.0); "
        "requires network 10.0.0.0/8, 192.168.0.0/16 (authorization.require.1))"
    )
    assert rows["DELETE /slurm/v0.0.45/job/{job_id}"].endswith(
        "(account patterns apply; requires group hpc or ops (authorization.require.0))"
    )
    assert rows["GET /slurm/v0.0.45/jobs/"].split() == ["GET", "/slurm/v0.0.45/jobs/"]
    _, out = run("token", "show", "physics-ci", "--json", "--config", str(config))
    allowed = json.loads(out)["versions"]["v0.0.44"]["allowed"]
    (submit,) = [op for op in allowed if op["operation"] == "slurm_v0044_post_job_submit"]
    assert submit["notes"] == [
        "account patterns apply",
        "requires group hpc or ops (authorization.require.0)",
    ]  # the operation-id rule names v0.0.45's operation only
