"""What the usage lab tests share: a gateway in front of a lab suite, its answers as the tests
compare them, and jobs submitted in the suite."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from tests.lab.env import LabSuite
from tests.server.gateway import create_token, gateway_settings
from tests.server.usage.slurm_tools import Sums

__all__ = ["SUITES", "USAGE", "expected", "get_usage", "groups", "submit", "usage_gateway"]

SUITES = ["trixie", "forky"]
USAGE = "/slurmgate/v1/usage"


@asynccontextmanager
async def usage_gateway(
    suite: LabSuite, tmp_path: Path, url: str | None = None
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    """A gateway in front of the suite's slurmrestd (or ``url``); tokens: dora (slurmdb:read, no
    account patterns), physics (carol, slurmdb:read, ``^physics$``) and carol (slurmdb:read)."""
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "dora": create_token(tokens_file, "dora", scopes=("slurmdb:read",)),
        "physics": create_token(
            tokens_file, "carol", scopes=("slurmdb:read",), accounts=("^physics$",)
        ),
        "carol": create_token(tokens_file, "carol", scopes=("slurmdb:read",)),
    }
    upstream: dict[str, object] = {"url": url} if url else {}
    settings = gateway_settings(suite, "http", tokens_file, upstream=upstream)
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, tokens
    finally:
        await client.close()


async def get_usage(
    client: TestClient[Any, Any], token: str, query: str, status: int = 200, cache: str = "MISS"
) -> dict[str, Any]:
    """The answer, computed afresh (``Cache-Control: no-cache``) unless ``cache`` is HIT."""
    fresh = {} if cache == "HIT" else {"Cache-Control": "no-cache"}
    async with client.get(
        f"{USAGE}?{query}", headers={"Authorization": f"Bearer {token}", **fresh}
    ) as response:
        body = await response.read()
        assert response.status == status, body[:1000]
        if status == 200:
            assert response.headers["X-Cache"] == cache
        data: dict[str, Any] = json.loads(body)
        return data


def submit(
    suite: LabSuite, user: str, account: str, cpus: int, seconds: int, *, hold: bool = False
) -> str:
    """sbatch of a ``sleep`` as ``user``; the job id."""
    out = suite.run(
        "sbatch",
        *(["--hold"] if hold else []),
        "--parsable",
        "--chdir=/tmp",
        "--output=/dev/null",
        "--job-name=slurmgate-usage",
        f"--account={account}",
        f"--cpus-per-task={cpus}",
        "--mem=100M",
        f"--wrap=sleep {seconds}",
        user=user,
    )
    return out.stdout.strip().split(";")[0]


def groups(data: dict[str, Any]) -> dict[tuple[str, ...], tuple[int, dict[str, int]]]:
    """An answer's groups: key -> (jobs, TRES-seconds)."""
    keys = data["group_by"]
    return {tuple(g[k] for k in keys): (g["jobs"], g["tres_seconds"]) for g in data["groups"]}


def expected(
    found: dict[tuple[str, ...], Sums],
) -> dict[tuple[str, ...], tuple[int, dict[str, int]]]:
    """Sums of sacct's records in the shape of :func:`groups`."""
    return {key: (s.jobs, s.seconds) for key, s in found.items()}
