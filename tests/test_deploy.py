"""deploy/: the systemd unit (systemd's own checks, its hardening, a valid ExecStart) and the
hardened configuration (loads, names only credentials the unit hands over, serves HTTPS)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from slurmgate.generated import ROUTES
from slurmgate.server.cli.commands import build_parser
from slurmgate.server.config import load_settings
from tests.lab.env import REPO, Lab
from tests.processes import stop_process, wait_ready
from tests.server.gateway import create_token
from tests.server.test_serve import free_port
from tests.server.tls_files import self_signed

UNIT = REPO / "deploy" / "slurmgate.service"
HARDENED = REPO / "deploy" / "slurmgate.hardened.toml"
CREDENTIALS = "/run/credentials/slurmgate.service/"
SLURMGATE = str(Path(sys.executable).parent / "slurmgate")


def directives(section: str) -> dict[str, list[str]]:
    """``key -> values`` of one section of the unit (keys may repeat)."""
    found: dict[str, list[str]] = {}
    current = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current == section:
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)", pytrace=False)
    return found


def installable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this virtualenv's slurmgate (verify checks it runs)."""
    unit = tmp_path / "slurmgate.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/slurmgate", SLURMGATE),
        encoding="utf-8",
    )
    return unit


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "verify", str(installable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_systemd_rates_its_exposure_low(tmp_path: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(installable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"Overall exposure level for slurmgate.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    # 0 is a fully locked-down unit, 10 an unprotected one; systemd calls up to 2.0 "OK"
    assert float(match[1]) <= 2.0


def test_the_unit_is_hardened() -> None:
    service = directives("Service")
    expected = {
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "MemoryDenyWriteExecute": ["yes"],
        "RestrictNamespaces": ["yes"],
        "RestrictSUIDSGID": ["yes"],
        "LockPersonality": ["yes"],
        "SystemCallArchitectures": ["native"],
        "User": ["slurmgate"],
    }
    assert {key: service.get(key) for key in expected} == expected
    assert service["SystemCallFilter"][0] == "@system-service"
    assert set(service["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "DynamicUser" not in service  # a dedicated user: the tokens file is group-readable


def test_exec_start_is_a_valid_serve_command_and_reload_is_sighup() -> None:
    service = directives("Service")
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/usr/local/bin/slurmgate"
    args = build_parser().parse_args(argv[1:])
    assert args.name == "serve"
    assert args.config == Path("/etc/slurmgate/slurmgate.toml")
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # exit 2 is a refused configuration: restarting cannot help
    assert service["RestartPreventExitStatus"] == ["2"]


def test_the_hardened_configuration_loads_and_uses_only_credentials_the_unit_loads() -> None:
    settings = load_settings(HARDENED)
    assert settings.listen.tls.enabled
    assert settings.listen.tls.minimum_version in {"1.2", "1.3"}
    assert not settings.auth.munge.enabled
    assert settings.cache.per_user
    loaded = {value.partition(":")[0] for value in directives("Service").get("LoadCredential", [])}
    used = {
        line.split('"')[1].removeprefix(CREDENTIALS)
        for line in HARDENED.read_text(encoding="utf-8").splitlines()
        if CREDENTIALS in line and not line.lstrip().startswith("#")
    }
    assert used == {"tls.crt", "tls.key", "jwt_key"}
    assert used <= loaded
    # requirements pick operations by scope: each scope listed must be some operation's
    (rule,) = settings.authorization.requirements()
    scopes = {route.scope for routes in ROUTES.values() for route in routes}
    assert rule.scopes <= scopes
    assert rule.scopes.isdisjoint({"slurm:read", "slurmdb:read", "slurm:jobs:manage"})


def test_the_hardened_configuration_serves_https(lab: Lab, tmp_path: Path) -> None:
    """As systemd would run it: the credentials copied where the unit puts them (here a folder
    of the test's own), the upstream the lab's."""
    suite = lab.suites["forky"]
    credentials = tmp_path / "credentials"
    server = self_signed(credentials, "tls")
    server.certificate.rename(credentials / "tls.crt")
    server.key.rename(credentials / "tls.key")
    shutil.copy(suite.jwt_key, credentials / "jwt_key")
    token = create_token(tmp_path / "tokens.toml", "carol", scopes=("slurmgate:hardware",))
    port = free_port()
    text = HARDENED.read_text(encoding="utf-8").replace(CREDENTIALS, f"{credentials}/")
    text = text.replace("port = 8443", f"port = {port}").replace('"0.0.0.0"', '"127.0.0.1"')
    text = text.replace("http://127.0.0.1:6820", suite.url)
    text = text.replace("/etc/slurmgate/tokens.toml", str(tmp_path / "tokens.toml"))
    config = tmp_path / "slurmgate.toml"
    config.write_text(text, encoding="utf-8")
    trusting = ssl.create_default_context(cafile=str(credentials / "tls.crt"))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/hardware/stats", headers={"Authorization": f"Bearer {token}"}
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/meta/versions", context=trusting, timeout=5
            ):
                return True
        except (urllib.error.URLError, OSError):
            return False

    process = subprocess.Popen(
        [SLURMGATE, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(process, ready, what="slurmgate", timeout=60, log=lambda: "")
        with urllib.request.urlopen(request, context=trusting, timeout=30) as response:  # noqa: S310
            body = json.loads(response.read())
            assert response.headers["X-Cache"] == "MISS"
        assert body["errors"] == []
        assert body["stats"]["nodes"] >= 1
    finally:
        stop_process(process)
        _, stderr = process.communicate()
    assert token not in stderr.decode()
