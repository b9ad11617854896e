"""Token sources (minted with a key, printed by a command, read from a file) and their renewal."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from pathlib import Path

import jwt
import pytest

from slurmgate.server.config import SlurmUserTokenSettings
from slurmgate.server.upstream.token import SlurmUserToken
from slurmgate.server.upstream.token_sources import (
    MAX_TOKEN_TEXT,
    CommandSource,
    FileSource,
    JwtKeySource,
    Token,
    TokenError,
    make_source,
    token_from_text,
)
from tests.server.upstream.fakes import next_pids, pid_reports, reaped

KEY = bytes(range(64))


def signed(user: str = "slurm", lifespan: int = 600, **claims: int) -> str:
    now = int(time.time())
    payload: dict[str, object] = {"sun": user, "iat": now, "exp": now + lifespan, **claims}
    return jwt.encode(payload, KEY, algorithm="HS256")


def raw(payload: str) -> str:
    """A JWT with exactly ``payload`` (JSON text) as its claims, and a signature nobody checks."""
    header, claims = (
        base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        for text in ('{"alg":"HS256","typ":"JWT"}', payload)
    )
    return f"{header}.{claims}.c2ln"


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, KEY, algorithms=["HS256"])
    return decoded


def expiry(token: str) -> int:
    exp = claims(token)["exp"]
    assert isinstance(exp, int)
    return exp


def python(code: str) -> tuple[str, ...]:
    """A command running ``code`` (commands get a clean environment: the interpreter by path)."""
    return (sys.executable, "-c", code)


# --- token text ---


@pytest.mark.parametrize("text", ["SLURM_JWT={t}\n", "{t}", "\n  {t}  \n\n", "SLURM_JWT={t}"])
def test_token_text_forms(text: str) -> None:
    value = signed()
    token = token_from_text(text.format(t=value), origin="test", lifespan=600, now=time.time())
    assert token.value == value
    assert token.user == "slurm"
    assert token.expires_at - token.issued_at == 600


def test_token_text_without_exp_lives_lifespan_from_iat() -> None:
    value = jwt.encode({"sun": "slurm", "iat": 1000}, KEY, algorithm="HS256")
    token = token_from_text(value, origin="test", lifespan=60, now=5000)
    assert (token.issued_at, token.expires_at) == (1000, 1060)


def test_token_text_without_iat_counts_from_now() -> None:
    value = jwt.encode({"sun": "slurm"}, KEY, algorithm="HS256")
    token = token_from_text(value, origin="test", lifespan=60, now=5000)
    assert (token.issued_at, token.expires_at) == (5000, 5060)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "found 0 lines"),
        ("SLURM_JWT=a.b.c\nSLURM_JWT=d.e.f\n", "found 2 lines"),
        ("export SLURM_JWT=a.b.c", "not a JWT"),
        ("not-a-token", "not a JWT"),
        ("a.b.c", "not a readable JWT"),
        (jwt.encode({"exp": "soon"}, KEY, algorithm="HS256"), "'exp' is not a whole number"),
        (jwt.encode({"iat": True}, KEY, algorithm="HS256"), "'iat' is not a whole number"),
    ],
)
def test_token_text_refused(text: str, problem: str) -> None:
    with pytest.raises(TokenError, match=problem):
        token_from_text(text, origin="test", lifespan=60, now=0)


NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        # JSON's 1e400 reads as infinity: a token that would never be renewed.
        ('{"sun":"slurm","iat":1800000000,"exp":1e400}', "'exp' is not a whole number"),
        ('{"sun":"slurm","iat":1800000000,"exp":Infinity}', "'exp' is not a whole number"),
        ('{"sun":"slurm","iat":1800000000,"exp":NaN}', "'exp' is not a whole number"),
        ('{"sun":"slurm","iat":-1e400,"exp":1800000600}', "'iat' is not a whole number"),
        ('{"sun":"slurm","iat":1800000000,"exp":1800000600.5}', "'exp' is not a whole number"),
        ('{"sun":"slurm","iat":1800000000,"exp":' + "9" * 400 + "}", "more than ten years"),
        ('{"sun":"slurm","iat":1800000000,"exp":2115360001}', "more than ten years"),
        ('{"sun":"slurm","iat":-5,"exp":1800000600}', "'iat' is before 1970"),
        ('{"sun":"slurm","iat":1800003601,"exp":1800009000}', "'iat' is more than 3600 s"),
        ('{"sun":"slurm","iat":1800000000,"exp":1800000000}', "'exp' is not after 'iat'"),
    ],
)
def test_token_times_must_be_sane_whole_seconds(payload: str, problem: str) -> None:
    with pytest.raises(TokenError, match=problem):
        token_from_text(raw(payload), origin="test", lifespan=60, now=NOW)


def test_token_times_at_the_limits_are_accepted() -> None:
    payload = '{"sun":"slurm","iat":1800003600,"exp":2115360000}'
    token = token_from_text(raw(payload), origin="test", lifespan=60, now=NOW)
    assert (token.issued_at, token.expires_at) == (1800003600, 2115360000)


# --- jwt_key ---


async def test_jwt_key_mints_slurms_claims(tmp_path: Path) -> None:
    key_file = tmp_path / "jwt_hs256.key"
    key_file.write_bytes(KEY)
    token = await JwtKeySource(key_file, user="slurm", lifespan=600).fetch()
    payload = claims(token.value)
    assert set(payload) == {"sun", "iat", "exp"}
    assert payload["sun"] == "slurm"
    assert payload["exp"] == token.expires_at == token.issued_at + 600
    assert jwt.get_unverified_header(token.value)["alg"] == "HS256"


async def test_jwt_key_rotation_is_used_at_the_next_renewal(tmp_path: Path) -> None:
    key_file = tmp_path / "jwt_hs256.key"
    key_file.write_bytes(KEY)
    source = JwtKeySource(key_file, user="slurm", lifespan=600)
    await source.fetch()
    key_file.write_bytes(KEY[::-1])
    token = await source.fetch()
    assert jwt.decode(token.value, KEY[::-1], algorithms=["HS256"])["sun"] == "slurm"


@pytest.mark.parametrize(("content", "problem"), [(None, "cannot read"), (b"", "is empty")])
async def test_jwt_key_unusable(tmp_path: Path, content: bytes | None, problem: str) -> None:
    key_file = tmp_path / "jwt_hs256.key"
    if content is not None:
        key_file.write_bytes(content)
    with pytest.raises(TokenError, match=problem):
        await JwtKeySource(key_file, user="slurm", lifespan=600).fetch()


async def test_jwt_key_renewal_hands_out_only_unexpired_tokens(tmp_path: Path) -> None:
    """Lifespan 10 s, renewed at a fifth: a new token comes before the first expires."""
    key_file = tmp_path / "jwt_hs256.key"
    key_file.write_bytes(KEY)
    settings = SlurmUserTokenSettings(jwt_key=key_file, lifespan=10, renew_at=0.2)
    manager = SlurmUserToken.from_settings(settings)
    first = await manager.get()
    handed_out: list[tuple[float, str]] = []
    manager.start()
    try:
        async with asyncio.timeout(8):
            while (value := await manager.get()) == first:
                handed_out.append((time.time(), value))
                await asyncio.sleep(0.1)  # sampling what requests would get, not ordering
    finally:
        await manager.stop()
    renewed_at = time.time()
    assert renewed_at < expiry(first) - 5  # renewed ~2 s in, well before the 10 s expiry
    assert claims(value)["iat"] != claims(first)["iat"]
    assert handed_out
    assert all(when < expiry(token) for when, token in handed_out)


# --- command ---


async def test_command_printing_slurm_jwt() -> None:
    value = signed(lifespan=300)
    source = CommandSource(python(f"print('SLURM_JWT={value}')"), lifespan=600, timeout=10)
    token = await source.fetch()
    assert token.value == value
    assert token.expires_at - token.issued_at == 300  # from the token's exp, not the setting


async def test_command_failing_names_its_exit_and_stderr() -> None:
    code = (
        "import sys; sys.stderr.write('scontrol: error: Unable to contact slurmctld'); sys.exit(3)"
    )
    source = CommandSource(python(code), lifespan=600, timeout=10)
    with pytest.raises(TokenError, match="exited 3: scontrol: error: Unable to contact slurmctld"):
        await source.fetch()


async def test_command_that_cannot_start() -> None:
    source = CommandSource(("/nonexistent/scontrol", "token"), lifespan=600, timeout=10)
    with pytest.raises(TokenError, match="cannot start"):
        await source.fetch()


async def test_command_printing_too_much() -> None:
    code = f"print('x' * {MAX_TOKEN_TEXT * 2})"
    source = CommandSource(python(code), lifespan=600, timeout=10)
    with pytest.raises(TokenError, match="printed more than"):
        await source.fetch()


async def test_command_over_its_time_is_killed_and_reaped(tmp_path: Path) -> None:
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '1000'])\n"
        f"open({str(tmp_path / 'pids')!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
        "time.sleep(1000)\n"
    )
    source = CommandSource(python(code), lifespan=600, timeout=1)
    async with pid_reports(tmp_path) as reports:
        fetching = asyncio.create_task(source.fetch())
        leader, child = await next_pids(reports)
        with pytest.raises(TokenError, match="still running after 1 s"):
            await fetching
    assert reaped(leader)
    assert reaped(child) or _zombie(child)


def _zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"


async def test_command_source_renews_through_the_manager() -> None:
    value = signed()
    settings = SlurmUserTokenSettings(source="command", command=python(f"print('{value}')"))
    manager = SlurmUserToken.from_settings(settings)
    assert await manager.get() == value


# --- file ---


class WatchedFile(FileSource):
    """A FileSource that tells when it has read the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, lifespan=600, poll_interval=0.05)
        self.read = asyncio.Event()

    async def fetch(self) -> Token:
        try:
            return await super().fetch()
        finally:
            self.read.set()


async def test_file_changes_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"SLURM_JWT={signed()}\n")
    path.chmod(0o600)
    source = FileSource(path, lifespan=600, poll_interval=1)
    await source.fetch()
    assert not await source.changed()
    replacement = tmp_path / "token.new"
    replacement.write_text(f"SLURM_JWT={signed(lifespan=900)}\n")
    replacement.replace(path)  # a new inode
    assert await source.changed()
    await source.fetch()
    assert not await source.changed()
    path.unlink()
    assert await source.changed()
    with pytest.raises(TokenError, match="cannot read"):
        await source.fetch()


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({}, "has no 'sun' claim"),
        ({"sun": 0}, "has no 'sun' claim"),
        ({"sun": "alice"}, "is for 'alice', not for slurm_user_token.user 'slurm'"),
    ],
)
async def test_a_file_token_for_no_one_or_someone_else_is_refused(
    tmp_path: Path, claims: dict[str, object], problem: str
) -> None:
    path = tmp_path / "token"
    now = int(time.time())
    path.write_text(jwt.encode({"iat": now, "exp": now + 600, **claims}, KEY, algorithm="HS256"))
    path.chmod(0o600)
    settings = SlurmUserTokenSettings(source="file", file=path)
    token = SlurmUserToken.from_settings(settings)
    with pytest.raises(TokenError, match=problem):
        await token.renew()
    assert token.expires_at is None


async def test_file_readable_by_everyone_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text(signed())
    path.chmod(0o644)
    source = FileSource(path, lifespan=600, poll_interval=1)
    await source.fetch()
    await source.fetch()
    assert caplog.text.count("readable by every user") == 1


async def test_file_rewritten_is_reread_by_the_background_task(tmp_path: Path) -> None:
    path = tmp_path / "token"
    first, second = signed(lifespan=600), signed(lifespan=700)
    path.write_text(first)
    source = WatchedFile(path)
    manager = SlurmUserToken(source, user="slurm", renew_at=0.5, retry_interval=5)
    assert await manager.get() == first
    manager.start()
    try:
        source.read.clear()
        path.write_text(second)  # in place: same inode, new size and time
        async with asyncio.timeout(10):
            await source.read.wait()
        assert await manager.get() == second
    finally:
        await manager.stop()


async def test_failing_file_is_retried_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    source = WatchedFile(path)
    manager = SlurmUserToken(source, user="slurm", renew_at=0.5, retry_interval=0.05)
    with pytest.raises(TokenError):
        await manager.renew()
    manager.start()
    try:
        value = signed()
        path.write_text(value)
        async with asyncio.timeout(10):
            while manager.expires_at is None:
                source.read.clear()
                await source.read.wait()
        assert await manager.get() == value
    finally:
        await manager.stop()
    assert "cannot read: No such file or directory" in caplog.text


def test_make_source_follows_the_settings(tmp_path: Path) -> None:
    key = SlurmUserTokenSettings(jwt_key=tmp_path / "k")
    command = SlurmUserTokenSettings(source="command", command=("scontrol", "token"))
    file = SlurmUserTokenSettings(source="file", file=tmp_path / "t", poll_interval=7)
    assert isinstance(make_source(key), JwtKeySource)
    assert isinstance(make_source(command), CommandSource)
    source = make_source(file)
    assert isinstance(source, FileSource)
    assert source.poll_interval == 7


async def test_file_token_past_its_renewal_point_is_used_and_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    now = int(time.time())
    stale = jwt.encode({"sun": "slurm", "iat": now - 500, "exp": now + 100}, KEY, "HS256")
    path.write_text(stale)
    manager = SlurmUserToken(
        FileSource(path, lifespan=600, poll_interval=1),
        user="slurm",
        renew_at=0.5,
        retry_interval=5,
    )
    for _ in range(3):
        await manager.renew()
    assert await manager.get() == stale
    assert caplog.text.count("past its renewal point") == 1
