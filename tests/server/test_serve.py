"""``slurmgate serve`` as an administrator runs it: a real process, a real port, real Slurm."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.lab.env import Lab
from tests.server.gateway import create_token

SLURMGATE = str(Path(sys.executable).parent / "slurmgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def first_answer(request: urllib.request.Request | str) -> bytes:
    """The body of the first answer to ``request`` from a gateway that is starting (30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                body: bytes = response.read()
                return body
        except urllib.error.URLError:
            assert time.monotonic() < deadline, "the gateway did not start listening"
            time.sleep(0.1)


def reap(process: subprocess.Popen[str]) -> str:
    """Kill ``process`` if it still runs (a test that failed half-way); its stderr."""
    if process.poll() is None:
        process.kill()
        process.wait()
    _, stderr = process.communicate()
    return stderr


def serve_fails(config: Path) -> list[str]:
    done = subprocess.run(
        [SLURMGATE, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_a_bad_configuration_names_the_file_the_key_and_the_problem(tmp_path: Path) -> None:
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        '[upstream]\nurl = "http://127.0.0.1:1"\ntimeout = -1\n'
        '[slurm_user_token]\njwt_key = "k"\n'
        '[auth]\ntokens_file = "tokens.toml"\nbogus = 1\n'
    )
    assert serve_fails(config) == [
        f"slurmgate serve: {config}: upstream.timeout: Input should be greater than 0",
        f"slurmgate serve: {config}: auth.bogus: Extra inputs are not permitted",
    ]
    config.write_text('[upstream]\ntransport = "unix"\n[slurm_user_token]\nsource = "file"\n')
    assert serve_fails(config) == [
        f"slurmgate serve: {config}: upstream: transport 'unix' needs 'upstream.socket'",
        f"slurmgate serve: {config}: slurm_user_token: source 'file' needs 'slurm_user_token.file'",
        f"slurmgate serve: {config}: auth: Field required",
    ]
    config.write_text("[upstream\n")
    (line,) = serve_fails(config)
    assert line.startswith(f"slurmgate serve: {config}: not valid TOML: ")


def test_serves_until_sigterm(lab: Lab, tmp_path: Path) -> None:
    suite = lab.suites["trixie"]
    port = free_port()
    token = create_token(tmp_path / "tokens.toml", "carol")
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        f'[listen]\nport = {port}\n[upstream]\nurl = "{suite.url}"\n'
        f'[slurm_user_token]\njwt_key = "{suite.jwt_key}"\n[auth]\ntokens_file = "tokens.toml"\n'
    )
    process = subprocess.Popen(
        [SLURMGATE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert (
            process.stdout.readline().strip() == f"slurmgate: listening on http://127.0.0.1:{port}"
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/slurm/latest/ping/",
            headers={"Authorization": f"Bearer {token}"},
        )
        body = json.loads(first_answer(request))
        assert body["meta"]["slurm"]["cluster"] == "trixie"
        assert body["meta"]["plugin"]["data_parser"] == "data_parser/v0.0.42"
        # SIGHUP asks for a reload of the tokens file; the gateway goes on serving.
        process.send_signal(signal.SIGHUP)
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        stderr = reap(process)
    assert token not in stderr
    # the access log: one JSON object per line, among the other (text) lines
    access = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [line["operation"] for line in access] == ["slurm_v0042_get_ping"] * 2
    assert {line["status"] for line in access} == {200}
    assert all(line["user"] == "carol" for line in access)


def _open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit in /proc/{pid}/limits")


#: what this machine lets a process have (prlimit may lower a hard limit, not raise it)
_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.mark.parametrize(
    ("limits", "expected", "warned"),
    [
        # a shell's usual soft limit under a higher hard one: raised to it, nothing to say (with
        # 1,024 memory files at most and 4,096 spare, 5,120 is enough)
        (f"1024:{min(_HARD, 16384)}", (min(_HARD, 16384),) * 2, min(_HARD, 16384) < 5120),
        # a hard limit too low for 1,024 memory files and the connections: said at start
        ("512:2048", (2048, 2048), True),
    ],
)
def test_serve_raises_its_open_files_limit(
    tmp_path: Path, limits: str, expected: tuple[int, int], warned: bool
) -> None:
    port = free_port()
    (tmp_path / "jwt.key").write_bytes(b"k" * 64)
    create_token(tmp_path / "tokens.toml", "carol")
    config = tmp_path / "slurmgate.toml"
    config.write_text(
        f'[listen]\nport = {port}\n[upstream]\nurl = "http://127.0.0.1:{free_port()}"\n'
        '[slurm_user_token]\njwt_key = "jwt.key"\n[auth]\ntokens_file = "tokens.toml"\n'
    )
    process = subprocess.Popen(
        ["prlimit", f"--nofile={limits}", SLURMGATE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("slurmgate: listening on")
        first_answer(f"http://127.0.0.1:{port}/meta/versions")  # SIGTERM is the gateway's now
        assert _open_files_limit(process.pid) == expected
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        stderr = reap(process)
    said = f"open files limit {expected[0]}: the cache may hold up to 1024 memory files" in stderr
    assert said is warned, stderr
