"""Health and metrics through the real slurmrestd of each lab suite."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slurmgate.server.ops.logs import JsonFormatter
from tests.lab.env import Lab, suite_versions
from tests.server.gateway import TRANSPORTS, create_token, start_gateway

SUITES = sorted({suite for suite, _ in suite_versions()})
CASES = [(s, t) for s in SUITES for t in TRANSPORTS]


@pytest.mark.parametrize(("suite_name", "transport"), CASES, ids=[f"{s}-{t}" for s, t in CASES])
async def test_health_with_both_pings_responding(
    lab: Lab, tmp_path: Path, suite_name: str, transport: str
) -> None:
    suite = lab.suites[suite_name]
    ops = create_token(tmp_path / "tokens.toml", "ops", scopes=("slurmgate:health",))
    client = await start_gateway(suite, transport, tmp_path)
    try:
        anonymous = await client.get("/health")
        assert (anonymous.status, json.loads(await anonymous.read())) == (200, {"status": "ok"})
        response = await client.get("/health", headers={"Authorization": f"Bearer {ops}"})
        body = json.loads(await response.read())
        assert response.status == 200, body
        assert body["status"] == "ok"
        checks = body["checks"]
        for daemon in ("slurmctld", "slurmdbd"):
            check = checks[daemon]
            assert check["status"] == "ok", check
            assert check["version"] == suite.versions[-1]
            assert check["controllers"]
            assert all(c["responding"] for c in check["controllers"])
        assert (checks["cache"]["status"], checks["cache"]["backend"]) == ("ok", "memory")
        assert checks["slurm_user_token"]["status"] == "ok"
    finally:
        await client.close()


@pytest.mark.parametrize("suite_name", SUITES)
async def test_metrics_and_access_log_after_real_requests(
    lab: Lab, tmp_path: Path, suite_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    suite = lab.suites[suite_name]
    version = suite.versions[-1]
    tokens = tmp_path / "tokens.toml"
    alice = create_token(tokens, "alice")
    ops = create_token(tokens, "ops", scopes=("slurmgate:metrics",))
    client = await start_gateway(suite, "http", tmp_path)
    try:
        auth = {"Authorization": f"Bearer {alice}"}
        for path in ("ping/", "nodes/", "nodes/", "partitions/"):
            response = await client.get(f"/slurm/{version}/{path}", headers=auth)
            assert response.status == 200, await response.text()
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {ops}"})
        assert response.status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(await response.text())
            for s in family.samples
        }
    finally:
        await client.close()
    forward = (("purpose", "forward"),)
    # ping, nodes (a miss; the second is a hit) and partitions went upstream
    assert samples[("slurmgate_upstream_request_duration_seconds_count", forward)] == 3
    assert samples[("slurmgate_upstream_request_duration_seconds_sum", forward)] > 0
    operation = f"slurm_v{version[1:].replace('.', '')}_get_nodes"  # slurm_v0045_get_nodes
    nodes = (("decision", "allow"), ("method", "GET"), ("operation", operation), ("status", "200"))
    assert samples[("slurmgate_requests_total", nodes)] == 2
    assert samples[("slurmgate_cache_requests_total", (("outcome", "hit"),))] == 1
    assert samples[("slurmgate_slurm_user_token_valid", ())] == 1
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if hasattr(r, "access")]
    upstream = [line for line in lines if line["upstream_status"] is not None]
    assert [line["upstream_status"] for line in upstream] == [200, 200, 200]
    assert all(line["upstream_seconds"] > 0 for line in upstream)
    assert alice not in caplog.text
    assert alice not in json.dumps(lines)
