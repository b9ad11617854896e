"""SlurmUser tokens against the real Slurm: minted with the suite's key, or from scontrol token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from slurmgate.server.config import SlurmUserTokenSettings, UpstreamSettings
from slurmgate.server.upstream.factory import make_transport
from slurmgate.server.upstream.token import SlurmUserToken
from slurmgate.server.upstream.transport import UpstreamRequest
from tests.lab.env import Lab, LabSuite

pytestmark = pytest.mark.lab

SUITES = ["trixie", "forky"]


async def diag(suite: LabSuite, token: str) -> tuple[int, dict[str, Any]]:
    """slurmctld's diag as SlurmUser: 200 only when slurmctld accepts the token."""
    transport = make_transport(UpstreamSettings(transport="http", url=suite.url))
    request = UpstreamRequest(
        "GET", f"/slurm/{suite.versions[-1]}/diag/", (("X-SLURM-USER-TOKEN", token),)
    )
    try:
        response = await transport.send(request)
    finally:
        await transport.close()
    return response.status, json.loads(response.body)


@pytest.mark.parametrize("suite_name", SUITES)
async def test_minted_token_is_accepted_by_slurm(lab: Lab, suite_name: str) -> None:
    suite = lab.suites[suite_name]
    manager = SlurmUserToken.from_settings(
        SlurmUserTokenSettings(source="jwt_key", jwt_key=suite.jwt_key)
    )
    status, body = await diag(suite, await manager.get())
    assert status == 200, body.get("errors")
    assert body["errors"] == []
    other = next(s for s in lab.suites.values() if s.name != suite_name)
    status, body = await diag(suite, other.token("slurm"))  # the other suite's key: refused
    assert status != 200
    assert body["errors"]


@pytest.mark.parametrize("suite_name", SUITES)
async def test_scontrol_token_in_the_chroot_as_slurm_user(lab: Lab, suite_name: str) -> None:
    suite = lab.suites[suite_name]
    command = ("chroot", "--userspec=slurm:slurm", str(suite.root), "scontrol", "token")
    settings = SlurmUserTokenSettings(source="command", command=(*command, "lifespan=60"))
    manager = SlurmUserToken.from_settings(settings)
    token = await manager.get()
    assert manager.expires_at is not None
    assert manager.issued_at is not None
    assert manager.expires_at - manager.issued_at == 60  # read from the token's own claims
    status, body = await diag(suite, token)
    assert status == 200, body.get("errors")
