"""Running the gateway in front of a lab suite, for integration tests."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.cli.commands import main as cli
from slurmgate.server.config import Settings, parse_settings
from tests.lab.env import LabSuite

__all__ = [
    "TRANSPORTS",
    "create_token",
    "gateway_settings",
    "logged_requests",
    "slurmrestd_requests",
    "start_gateway",
]

TRANSPORTS = ("http", "unix", "inetd")
ALL_SCOPES = (
    "slurm:read",
    "slurm:jobs:manage",
    "slurmdb:read",
)


def gateway_settings(
    suite: LabSuite, transport: str, tokens_file: Path, **sections: dict[str, object]
) -> Settings:
    """Settings for a gateway in front of ``suite`` over ``transport``."""
    upstream: dict[str, object] = {"transport": transport}
    if transport == "http":
        upstream["url"] = suite.url
    elif transport == "unix":
        upstream["socket"] = str(suite.unix_socket)
    else:
        upstream["command"] = list(suite.inetd_command)
    data: dict[str, object] = {
        "upstream": upstream,
        "slurm_user_token": {"source": "jwt_key", "user": "slurm", "jwt_key": str(suite.jwt_key)},
        "auth": {"tokens_file": str(tokens_file)},
    }
    for name, values in sections.items():
        merged = dict(data.get(name, {}))  # type: ignore[call-overload]
        merged.update(values)
        data[name] = merged
    return parse_settings(data, origin="test")


def create_token(
    tokens_file: Path,
    user: str,
    *,
    scopes: tuple[str, ...] = ALL_SCOPES,
    accounts: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> str:
    """``slurmgate token create`` for ``user``; returns the secret it prints."""
    args = ["token", "create", "--tokens-file", str(tokens_file), "--user", user, *extra]
    for scope in scopes:
        args += ["--scope", scope]
    for account in accounts:
        args += ["--account", account]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli(args)
    assert status == 0, out.getvalue()
    return out.getvalue().strip()


_REQUEST_LINE = re.compile(r"operations_router: .* (GET|POST|DELETE|PUT|PATCH) (/\S*)")


def logged_requests(log: Path, method: str | None = None, path: str | None = None) -> int:
    """How many requests a slurmrestd log holds, only ``method`` and ``path`` if given.

    slurmrestd logs the path without the query string; ``path`` is matched exactly (without one).
    """
    count = 0
    with log.open(errors="replace") as f:
        for line in f:
            match = _REQUEST_LINE.search(line)
            if match is None:
                continue
            if method is not None and match[1] != method:
                continue
            if path is not None and match[2].partition("?")[0] != path:
                continue
            count += 1
    return count


def slurmrestd_requests(suite: LabSuite, method: str | None = None, path: str | None = None) -> int:
    """How many requests the suite's slurmrestd daemon has logged so far (see logged_requests)."""
    return logged_requests(suite.root.parent / "logs" / "slurmrestd.log", method, path)


async def start_gateway(suite: LabSuite, transport: str, tmp_path: Path) -> TestClient[Any, Any]:
    """An in-process gateway in front of ``suite`` on a real port (tokens in tmp_path)."""
    settings = gateway_settings(suite, transport, tmp_path / "tokens.toml")
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
    try:
        await client.start_server()
    except BaseException:
        await client.close()
        raise
    return client
