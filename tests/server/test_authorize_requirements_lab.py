"""Group and network requirements through the gateway in front of the real Slurm.

The lab's users exist only in its chroots, so the gateway reads the chroot's /etc/passwd, and a
copy of its /etc/group with one more line: the administrators' group, hpcadmin, holding dora
(who is also Slurm's administrator in the lab). The lab itself is not changed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from slurmgate.server.app import build_app
from tests.lab.env import Lab, LabSuite, suite_versions
from tests.server.gateway import create_token, gateway_settings

pytestmark = pytest.mark.lab

CASES = suite_versions()
IDS = [f"{s}-{v}" for s, v in CASES]
SCOPES = ("slurmdb:read", "slurmdb:config:read")


@dataclass
class Admin:
    suite: LabSuite
    version: str
    server: TestServer
    tokens: dict[str, str]

    async def get(self, path: str, user: str, *, local: str = "127.0.0.1") -> tuple[int, Any]:
        """GET ``path`` (``/V/`` is the version) as ``user``, from the local address ``local``."""
        url = self.server.make_url(path.replace("/V/", f"/{self.version}/"))
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        connector = aiohttp.TCPConnector(local_addr=(local, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status, json.loads(await response.read())


@pytest.fixture
async def admin(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Admin]:
    suite_name, version = request.param
    suite = lab.suites[suite_name]
    group_file = tmp_path / "group"
    chroot_groups = (suite.root / "etc" / "group").read_text()
    group_file.write_text(chroot_groups + "hpcadmin:x:3000:dora\n")
    tokens_file = tmp_path / "tokens.toml"
    tokens = {user: create_token(tokens_file, user, scopes=SCOPES) for user in ("alice", "dora")}
    settings = gateway_settings(
        suite,
        "http",
        tokens_file,
        authorization={
            "require": [
                {
                    "scopes": ["slurmdb:config:read"],
                    "groups": ["hpcadmin"],
                    "networks": ["127.0.0.1/32"],
                }
            ],
            "passwd_file": str(suite.root / "etc" / "passwd"),
            "group_file": str(group_file),
        },
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield Admin(suite, version, server, tokens)
    finally:
        await server.close()


@pytest.mark.parametrize("admin", CASES, ids=IDS, indirect=True)
async def test_the_config_dump_needs_hpcadmin_and_the_gateway_host(admin: Admin) -> None:
    status, body = await admin.get("/slurmdb/V/config", "dora")
    assert status == 200, body
    assert body["errors"] == []
    assert {"chem", "physics"} <= {account["name"] for account in body["accounts"]}
    # The same request from another address: refused by the gateway (Slurm would answer it).
    status, body = await admin.get("/slurmdb/V/config", "dora", local="127.0.0.2")
    assert status == 403, body
    (error,) = body["errors"]
    assert error["source"] == "network"
    assert "this request comes from 127.0.0.2" in error["description"]
    # alice holds the scope but is not in hpcadmin.
    status, body = await admin.get("/slurmdb/V/config", "alice")
    assert status == 403, body
    (error,) = body["errors"]
    assert error["source"] == "group:hpcadmin"
    # What no rule picks is untouched, from anywhere.
    status, body = await admin.get("/slurmdb/V/accounts/", "alice", local="127.0.0.2")
    assert status == 200, body
    assert {"chem", "physics"} <= {account["name"] for account in body["accounts"]}
