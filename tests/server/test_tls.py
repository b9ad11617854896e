"""HTTPS from ``[listen.tls]``: ``slurmgate serve`` with a self-signed certificate made here and a
client verifying against it; the files' problems told at start; minimum version; mutual TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import aiohttp
import pytest
from aiohttp import web

from slurmgate.server.cli.tls import server_context
from slurmgate.server.config import TlsSettings, load_settings
from slurmgate.server.errors import ConfigError
from tests.lab.env import Lab
from tests.processes import stop_process, wait_ready
from tests.server.gateway import create_token
from tests.server.test_serve import SLURMGATE, free_port, serve_fails
from tests.server.tls_files import Issued, issue, make_ca, self_signed


def config_text(port: int, url: str, jwt_key: Path, tls: str) -> str:
    return (
        f'[listen]\nport = {port}\n[listen.tls]\n{tls}\n[upstream]\nurl = "{url}"\n'
        f'[slurm_user_token]\njwt_key = "{jwt_key}"\n[auth]\ntokens_file = "tokens.toml"\n'
    )


def client_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def test_serve_answers_https_to_a_client_that_verifies_the_certificate(
    lab: Lab, tmp_path: Path
) -> None:
    suite = lab.suites["trixie"]
    server = self_signed(tmp_path / "tls")
    port = free_port()
    token = create_token(tmp_path / "tokens.toml", "carol")
    config = tmp_path / "slurmgate.toml"
    tls = f'certificate = "{server.certificate}"\nkey = "{server.key}"'
    config.write_text(config_text(port, suite.url, suite.jwt_key, tls))
    process = subprocess.Popen(
        [SLURMGATE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    trusting = client_context(server.certificate)
    ping = urllib.request.Request(
        f"https://127.0.0.1:{port}/slurm/latest/ping/",
        headers={"Authorization": f"Bearer {token}"},
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/meta/versions", context=trusting, timeout=5
            ):
                return True
        except (urllib.error.URLError, OSError):
            return False

    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        assert line == f"slurmgate: listening on https://127.0.0.1:{port}"
        wait_ready(process, ready, what="slurmgate", timeout=60, log=lambda: "")
        with urllib.request.urlopen(ping, context=trusting, timeout=30) as response:  # noqa: S310
            body = json.loads(response.read())
        assert body["meta"]["slurm"]["cluster"] == "trixie"
        # a client that does not trust the certificate refuses it
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(ping, context=ssl.create_default_context(), timeout=30)  # noqa: S310
        # plain HTTP gets no answer from a TLS port
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/meta/versions", timeout=30)
    finally:
        stop_process(process)
        _, stderr = process.communicate()
    assert token not in stderr.decode()


def test_bad_certificate_or_key_paths_stop_the_start_with_the_key_named(tmp_path: Path) -> None:
    server = self_signed(tmp_path / "tls")
    config = tmp_path / "slurmgate.toml"
    missing = tmp_path / "nowhere" / "server.key"
    tls = f'certificate = "{server.certificate}"\nkey = "{missing}"'
    config.write_text(config_text(free_port(), "http://127.0.0.1:1", tmp_path / "jwt", tls))
    assert serve_fails(config) == [
        f"slurmgate serve: {config}: listen.tls.key: cannot read {missing}: "
        "No such file or directory"
    ]
    tls = f'certificate = "{tmp_path}"\nkey = "{server.key}"'
    config.write_text(config_text(free_port(), "http://127.0.0.1:1", tmp_path / "jwt", tls))
    assert serve_fails(config) == [
        f"slurmgate serve: {config}: listen.tls.certificate: cannot read {tmp_path}: Is a directory"
    ]


def _problems(tls: TlsSettings) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        server_context(tls, "site.toml")
    return caught.value.problems


def test_files_that_are_not_what_they_should_be(tmp_path: Path) -> None:
    server = self_signed(tmp_path / "a")
    other = self_signed(tmp_path / "b")
    ca = make_ca(tmp_path / "ca")
    locked = issue(ca, tmp_path / "c", "locked", password=b"secret")
    text = tmp_path / "text.pem"
    text.write_text("not PEM\n")
    text.chmod(0o600)
    assert _problems(TlsSettings(certificate=text, key=server.key)) == [
        f"site.toml: listen.tls.certificate: no PEM certificate in {text}"
    ]
    assert _problems(TlsSettings(certificate=server.certificate, key=text)) == [
        f"site.toml: listen.tls.key: no PEM private key in {text}"
    ]
    assert _problems(TlsSettings(certificate=server.certificate, key=other.key)) == [
        f"site.toml: listen.tls.key: {other.key} is not the key of the certificate "
        f"{server.certificate}"
    ]
    (problem,) = _problems(TlsSettings(certificate=locked.certificate, key=locked.key))
    assert problem.startswith(f"site.toml: listen.tls.key: {locked.key} is encrypted")
    assert _problems(
        TlsSettings(certificate=server.certificate, key=server.key, client_ca=text)
    ) == [f"site.toml: listen.tls.client_ca: no PEM certificate in {text}"]
    server.key.chmod(0o644)
    assert _problems(TlsSettings(certificate=server.certificate, key=server.key)) == [
        f"site.toml: listen.tls.key: {server.key} is readable by every user (mode 0644); make it "
        "0600 or 0640 (or use systemd's LoadCredential=)"
    ]
    server.key.chmod(0o640)
    assert server_context(TlsSettings(certificate=server.certificate, key=server.key), "s")
    gone = tmp_path / "gone.pem"
    assert _problems(TlsSettings(certificate=gone, key=gone, client_ca=gone)) == [
        f"site.toml: listen.tls.{key}: cannot read {gone}: No such file or directory"
        for key in ("certificate", "key", "client_ca")
    ]
    assert server_context(TlsSettings(), "site.toml") is None


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ('key = "k.pem"', "listen.tls: 'certificate' and 'key' go together"),
        ('certificate = "c.pem"', "listen.tls: 'certificate' and 'key' go together"),
        ('client_ca = "ca.pem"', "listen.tls: 'client_ca' needs 'certificate' and 'key'"),
        ('certificate = "c.pem"\nkey = "k.pem"\nminimum_version = "1.1"', "minimum_version"),
    ],
)
def test_the_configuration_check_refuses_half_a_setup(
    tmp_path: Path, tls: str, message: str
) -> None:
    config = tmp_path / "slurmgate.toml"
    config.write_text(config_text(8080, "http://127.0.0.1:1", tmp_path / "jwt", tls))
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    (problem,) = caught.value.problems
    assert message in problem
    assert problem.startswith(f"{config}: listen.tls")


@asynccontextmanager
async def https_server(context: ssl.SSLContext) -> AsyncIterator[str]:
    """A trivial app served with ``context``; its https base URL."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def fetch(url: str, context: ssl.SSLContext) -> str:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        return await response.text()


@pytest.mark.parametrize("minimum", ["1.2", "1.3"])
async def test_the_minimum_version_is_enforced(
    tmp_path: Path, minimum: Literal["1.2", "1.3"]
) -> None:
    server = self_signed(tmp_path)
    context = server_context(
        TlsSettings(certificate=server.certificate, key=server.key, minimum_version=minimum),
        "site.toml",
    )
    assert context is not None
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    old = client_context(server.certificate)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    async with https_server(context) as url:
        assert await fetch(url, client_context(server.certificate)) == "hello"
        if minimum == "1.2":
            assert await fetch(url, old) == "hello"
        else:
            # the only difference from "1.2" above: the server's minimum version
            with pytest.raises(aiohttp.ClientConnectionError):
                await fetch(url, old)


def _with_client_certificate(server: Issued, client: Issued) -> ssl.SSLContext:
    context = client_context(server.certificate)
    context.load_cert_chain(client.certificate, client.key)
    return context


async def test_client_ca_asks_for_a_certificate_it_signed(tmp_path: Path) -> None:
    server = self_signed(tmp_path / "server")
    ca = make_ca(tmp_path / "ca")
    stranger_ca = make_ca(tmp_path / "stranger", "another CA")
    member = issue(ca, tmp_path / "ca", "portal", client=True)
    stranger = issue(stranger_ca, tmp_path / "stranger", "portal", client=True)
    context = server_context(
        TlsSettings(certificate=server.certificate, key=server.key, client_ca=ca.certificate),
        "site.toml",
    )
    assert context is not None
    async with https_server(context) as url:
        assert await fetch(url, _with_client_certificate(server, member)) == "hello"
        for refused in (
            client_context(server.certificate),
            _with_client_certificate(server, stranger),
        ):
            with pytest.raises(aiohttp.ClientConnectionError):
                await fetch(url, refused)
