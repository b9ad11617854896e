"""The internal index for real: publish to pypiserver, pip install, drive the gateway with it.

`make publish`'s code path (``python -m slurmgate.codegen publish``, credentials from the
environment) uploads the clients `make clients` builds to a pypiserver of ours on a free loopback
port (uploads need the htpasswd user); a fresh virtualenv installs ``slurmgate-client-v0045`` (and
v0.0.42, the trixie suite's newest) from that index only, dependencies from the machine's
configured indexes; then ``DRIVER``, run by the virtualenv's python, drives a gateway in front of
the lab with a gateway token for alice: ping, list jobs, submit a held job, read it, cancel it,
plus a gateway error and a slurmrestd error, each read as the generated typed models.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from slurmgate.codegen.packages import ClientsOutcome
from slurmgate.server.app import build_app
from tests.codegen.package_index import PackageIndex, fresh_venv, pip
from tests.lab.env import Lab, suite_versions
from tests.server.gateway import create_token, gateway_settings

pytestmark = pytest.mark.lab

#: newest API version of each suite (suite_versions() lists them oldest first)
NEWEST = {suite: version for suite, version in suite_versions()}
PUBLISHER = "publisher"

#: Runs in the fresh virtualenv: no slurmgate, no pytest; prints what it saw as one JSON line.
DRIVER = """
import importlib, json, sys

base_url, token, tag, name = sys.argv[1:5]
T = tag.upper()
package = importlib.import_module(f"slurmgate_client_{tag}")
models = importlib.import_module(f"slurmgate_client_{tag}.models")


def call(namespace, operation, client, *args, **kwargs):
    module = importlib.import_module(
        f"slurmgate_client_{tag}.api.{namespace}.{namespace}_{tag}_{operation}"
    )
    answer = module.sync_detailed(*args, client=client, **kwargs)
    return answer.status_code, answer.parsed


def ok(answer, model):
    status, parsed = answer
    assert status == 200, (status, parsed)
    assert isinstance(parsed, getattr(models, T + model)), type(parsed)
    assert parsed.errors == [], parsed.errors
    return parsed


seen = {}
with package.AuthenticatedClient(base_url=base_url, token=token) as slurm:
    ping = ok(call("slurm", "get_ping", slurm), "OpenapiPingArrayResp")
    seen["ping"] = [type(ping).__name__, [p.responding for p in ping.pings]]
    jobs = ok(call("slurm", "get_jobs", slurm), "OpenapiJobInfoResp")
    seen["jobs_before"] = type(jobs).__name__
    job = getattr(models, T + "JobDescMsg")(
        name=name,
        account="physics",
        hold=True,
        script="#!/bin/sh\\nsleep 300\\n",
        current_working_directory="/tmp",
        environment=["PATH=/usr/bin:/bin"],
    )
    request = getattr(models, T + "JobSubmitReq")(job=job)
    answer = call("slurm", "post_job_submit", slurm, body=request)
    submitted = ok(answer, "OpenapiJobSubmitResponse")
    job_id = submitted.job_id
    seen["submitted"] = [type(submitted).__name__, isinstance(job_id, int)]
    listed = ok(call("slurm", "get_jobs", slurm), "OpenapiJobInfoResp")
    seen["listed"] = job_id in [j.job_id for j in listed.jobs]
    read = ok(call("slurm", "get_job", slurm, str(job_id)), "OpenapiJobInfoResp")
    (info,) = read.jobs
    seen["job"] = {
        "class": type(info).__name__,
        "name": info.name,
        "user": info.user_name,
        "account": info.account,
        "state": [s.value for s in info.job_state],
        "reason": info.state_reason,
        "job_resources": info.job_resources,
    }
    cancelled = ok(call("slurm", "delete_job", slurm, str(job_id)), "OpenapiKillJobResp")
    seen["cancelled"] = type(cancelled).__name__
    after = ok(call("slurm", "get_job", slurm, str(job_id)), "OpenapiJobInfoResp")
    seen["state_after_cancel"] = [s.value for s in after.jobs[0].job_state]
    status, missing = call("slurm", "get_job", slurm, "999999999")
    seen["unknown_job"] = [status, type(missing).__name__, [e.error for e in missing.errors]]
with package.Client(base_url=base_url, headers={"X-SLURM-USER-TOKEN": token}) as slurm:
    ping = ok(call("slurm", "get_ping", slurm), "OpenapiPingArrayResp")
    seen["header_ping"] = type(ping).__name__
with package.AuthenticatedClient(base_url=base_url, token="not-a-token") as slurm:
    status, refused = call("slurm", "get_ping", slurm)
    seen["bad_token"] = [status, type(refused).__name__, len(refused.errors)]
print(json.dumps(seen))
"""


def _environ(**extra: str) -> dict[str, str]:
    """This process's environment without any TWINE_* setting, plus ``extra``."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith("TWINE_")}
    return {**kept, **extra}


def _publish(dist: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What `make publish` runs, on ``dist``."""
    command = [sys.executable, "-m", "slurmgate.codegen", "publish", "--dist", str(dist)]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PackageIndex, str]]:
    """Our pypiserver, and the password of its one uploader."""
    password = secrets.token_urlsafe(16)
    server = PackageIndex(tmp_path_factory.mktemp("index"), PUBLISHER, password)
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server, password
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client_python(
    index: tuple[PackageIndex, str],
    built_clients: ClientsOutcome,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """Publish the clients to the index, then a fresh venv that installed two from it."""
    server, password = index
    dist = built_clients.files[0].parent

    unconfigured = _publish(dist, _environ())
    assert unconfigured.returncode == 2, unconfigured.stderr
    assert "no package index configured" in unconfigured.stderr

    url = {"TWINE_REPOSITORY_URL": server.url, "TWINE_USERNAME": PUBLISHER}
    wrong = secrets.token_urlsafe(16)
    refused = _publish(dist, _environ(**url, TWINE_PASSWORD=wrong))
    assert refused.returncode == 1, refused.stderr
    assert "403" in refused.stderr or "401" in refused.stderr, refused.stderr
    assert list(server.packages.iterdir()) == []

    published = _publish(dist, _environ(**url, TWINE_PASSWORD=password))
    assert published.returncode == 0, published.stderr + server.log()
    uploaded = sorted(path.name for path in server.packages.iterdir())
    assert uploaded == sorted(path.name for path in built_clients.files)

    directory = tmp_path_factory.mktemp("venv")
    python = fresh_venv(directory / "venv")
    report = directory / "install.json"
    wanted = [f"slurmgate-client-{NEWEST[suite].replace('.', '')}" for suite in sorted(NEWEST)]
    pip(
        python, "install", "--quiet", "--index-url", server.simple, "--report", report, *wanted,
    )  # fmt: skip
    installed = json.loads(report.read_text(encoding="utf-8"))["install"]
    sources = {
        item["metadata"]["name"]: item["download_info"]["url"]
        for item in installed
        if item["metadata"]["name"].startswith("slurmgate-client-")
    }
    assert sorted(sources) == sorted(wanted)
    for url_seen in sources.values():
        assert url_seen.startswith(server.url), url_seen
    return python


@pytest.mark.parametrize("suite_name", sorted(NEWEST))
async def test_client_from_the_index_drives_the_gateway(
    lab: Lab, tmp_path: Path, client_python: Path, suite_name: str
) -> None:
    suite = lab.suites[suite_name]
    version = NEWEST[suite_name]
    tag = version.replace(".", "")
    name = f"sg-index-{uuid.uuid4().hex[:8]}"
    tokens_file = tmp_path / "tokens.toml"
    token = create_token(
        tokens_file, "alice", scopes=("slurm:read", "slurm:jobs:manage"), accounts=("physics",)
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    server = TestServer(build_app(gateway_settings(suite, "http", tokens_file)), host="127.0.0.1")
    await server.start_server()
    try:
        process = await asyncio.create_subprocess_exec(
            str(client_python),
            str(driver),
            f"http://{server.host}:{server.port}",
            token,
            tag,
            name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        await server.close()
        # only matters when the driver failed before its cancel
        await asyncio.to_thread(suite.run, "scancel", "--name", name)
    assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
    seen: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])

    tag_class = tag.upper()
    assert seen["ping"] == [f"{tag_class}OpenapiPingArrayResp", [True]]
    assert seen["jobs_before"] == f"{tag_class}OpenapiJobInfoResp"
    assert seen["submitted"] == [f"{tag_class}OpenapiJobSubmitResponse", True]
    assert seen["listed"] is True
    assert seen["job"] == {
        "class": f"{tag_class}JobInfo",
        "name": name,
        "user": "alice",
        "account": "physics",
        "state": ["PENDING"],
        "reason": "JobHeldUser",
        "job_resources": None,  # codegen's nullable_job_resources
    }
    assert seen["cancelled"] == f"{tag_class}OpenapiKillJobResp"
    assert seen["state_after_cancel"] == ["CANCELLED"]
    # slurmrestd's own error, read as its envelope (codegen's error_answers_are_envelopes)
    assert seen["unknown_job"] == [404, f"{tag_class}OpenapiResp", ["Invalid job id specified"]]
    assert seen["header_ping"] == f"{tag_class}OpenapiPingArrayResp"
    # the gateway's own error, from its OpenAPI document
    assert seen["bad_token"] == [401, "SlurmgateErrorResp", 1]
