"""A client generated from the spec works unchanged against the gateway: only URL and token change.

The client is what a third party would build: ``openapi-python-client generate`` on the spec of
the newest API version of each lab suite, as codegen fixes it (``fixed_spec``: the published spec
plus codegen/fixes.py). ``use_slurm`` is the "existing client code" written for slurmrestd; it runs
first against the lab's slurmrestd with a Slurm JWT for alice, then against the gateway
(in-process, on a real port) with a gateway token for alice, and both runs must see the same thing.

slurmrestd's answers do not fully match its published spec: a job without resources comes back
with ``"job_resources": null``, which the spec does not allow and the generated models cannot
parse (``nullable_job_resources`` in codegen/fixes.py repairs it).
``test_published_spec_cannot_read_a_pending_job`` generates a client from ``specs/`` exactly as
published and pins that failure, so the fix is dropped once slurmrestd's spec allows the null.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

import httpx
import pytest
from aiohttp.test_utils import TestServer

from slurmgate.codegen.fixes import apply_fixes
from slurmgate.codegen.load import load_specs
from slurmgate.server.app import build_app
from tests.lab.env import REPO, Lab, suite_versions
from tests.server.gateway import create_token, gateway_settings

pytestmark = pytest.mark.lab

#: newest API version of each suite (suite_versions() lists them oldest first)
NEWEST = {suite: version for suite, version in suite_versions()}
SUITES = sorted(NEWEST)

Auth = Literal["x-slurm-user-token", "bearer"]
AUTHS: tuple[Auth, ...] = ("x-slurm-user-token", "bearer")


def fixed_spec(version: str) -> dict[str, Any]:
    """``specs/<version>.json`` with codegen's spec fixes applied, as ``make regen`` uses it."""
    specs, problems = load_specs(REPO / "specs")
    assert problems == [], problems
    (spec,) = [spec for spec in specs if spec.entry.version == version]
    document = copy.deepcopy(spec.document)
    report = apply_fixes(version, document)
    assert report.problems == [], report.problems
    return document


@dataclasses.dataclass(frozen=True)
class Api:
    """The parts of one generated client package that ``use_slurm`` uses."""

    version: str
    client: Any
    authenticated_client: Any
    job_submit_req: Any
    job_desc_msg: Any
    ping: ModuleType
    nodes: ModuleType
    partitions: ModuleType
    submit: ModuleType
    job: ModuleType
    cancel: ModuleType


def bind(package: ModuleType, version: str) -> Api:
    """Look up the operations and models of ``version`` in a generated ``package``."""
    tag = version.replace(".", "")  # v0045: operation ids are slurm_v0045_get_ping ...
    models = importlib.import_module(f"{package.__name__}.models")

    def operation(name: str) -> ModuleType:
        return importlib.import_module(f"{package.__name__}.api.slurm.slurm_{tag}_{name}")

    return Api(
        version=version,
        client=package.Client,
        authenticated_client=package.AuthenticatedClient,
        job_submit_req=getattr(models, f"{tag.upper()}JobSubmitReq"),
        job_desc_msg=getattr(models, f"{tag.upper()}JobDescMsg"),
        ping=operation("get_ping"),
        nodes=operation("get_nodes"),
        partitions=operation("get_partitions"),
        submit=operation("post_job_submit"),
        job=operation("get_job"),
        cancel=operation("delete_job"),
    )


class Generator:
    """Generates client packages into one directory, each once per test session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.packages: dict[tuple[str, bool], Api] = {}

    def api(self, version: str, *, fixed: bool) -> Api:
        """``version``'s client: from the published spec, or from codegen's fixed spec."""
        key = (version, fixed)
        if key not in self.packages:
            self.packages[key] = self._generate(version, fixed=fixed)
        return self.packages[key]

    def _generate(self, version: str, *, fixed: bool) -> Api:
        package = "client_" + version.replace(".", "") + ("" if fixed else "_published")
        spec = REPO / "specs" / f"{version}.json"
        if fixed:
            spec = self.directory / f"{package}.json"
            spec.write_text(json.dumps(fixed_spec(version)), "utf-8")
        # The venv's bin first: the generator runs `ruff` from PATH on its output.
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run(
            [
                str(bin_dir / "openapi-python-client"),
                *("generate", "--path", str(spec), "--meta", "none"),
                *("--output-path", str(self.directory / package)),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return bind(importlib.import_module(package), version)


@pytest.fixture(scope="session")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generator]:
    """Generated clients, importable for the session under names unique per version."""
    directory = tmp_path_factory.mktemp("clients")
    sys.path.insert(0, str(directory))
    try:
        yield Generator(directory)
    finally:
        sys.path.remove(str(directory))
        for name in [n for n in sys.modules if n.startswith("client_v00")]:
            del sys.modules[name]


# Sync fixtures, so that generating (seconds of subprocess) never runs inside the event loop.
@pytest.fixture
def api(generator: Generator, suite_name: str) -> Api:
    """The client for the suite's newest version, from the spec codegen fixes."""
    return generator.api(NEWEST[suite_name], fixed=True)


@pytest.fixture
def published_api(generator: Generator, suite_name: str) -> Api:
    """The client for the suite's newest version, from the spec exactly as published."""
    return generator.api(NEWEST[suite_name], fixed=False)


@dataclasses.dataclass(frozen=True)
class Seen:
    """What the client code saw, read from the generated models."""

    #: class names of the parsed answers: ping, nodes, partitions, submit, job, cancel
    answer_types: tuple[str, ...]
    cluster: str
    data_parser: str
    #: (hostname, responding) of each slurmctld
    pings: tuple[tuple[str, bool], ...]
    nodes: tuple[str, ...]
    partitions: tuple[str, ...]
    job_id: int = dataclasses.field(compare=False)  # a new job in each run
    job_user: str
    job_account: str
    job_name: str
    job_partition: str
    job_state: tuple[str, ...]
    state_reason: str
    #: what the caller-supplied check found while the job was queued (Slurm's own view)
    queued: str
    cancel_failures: tuple[str, ...]
    state_after_cancel: tuple[str, ...]


class Answer(Protocol):
    """What the generated ``asyncio_detailed`` functions return (``types.Response``)."""

    status_code: int
    content: bytes
    parsed: Any


def ok(response: Answer) -> Any:  # noqa: ANN401 - the generated models are imported at run time
    """The parsed answer of a call that succeeded; anything else fails with slurmrestd's words."""
    assert response.status_code == 200, response.content[:2000]
    assert response.parsed.errors == [], response.parsed.errors
    return response.parsed


async def use_slurm(
    api: Api,
    base_url: str,
    token: str,
    *,
    auth: Auth,
    while_queued: Callable[[int], Awaitable[str]],
) -> Seen:
    """The existing client code: ping, nodes, partitions, submit a held job, read it, cancel it."""
    if auth == "x-slurm-user-token":
        client = api.client(base_url=base_url, headers={"X-SLURM-USER-TOKEN": token})
    else:
        client = api.authenticated_client(base_url=base_url, token=token, prefix="Bearer")
    async with client as slurm:
        ping = ok(await api.ping.asyncio_detailed(client=slurm))
        nodes = ok(await api.nodes.asyncio_detailed(client=slurm))
        partitions = ok(await api.partitions.asyncio_detailed(client=slurm))
        job = api.job_desc_msg(
            name="sg-third-party",
            script="#!/bin/sh\nsleep 300\n",
            account="physics",
            current_working_directory="/",
            environment=["PATH=/usr/bin:/bin"],
            hold=True,
        )
        request = api.job_submit_req(job=job)
        submitted = ok(await api.submit.asyncio_detailed(client=slurm, body=request))
        job_id = submitted.job_id
        queued = await while_queued(job_id)
        read = ok(await api.job.asyncio_detailed(client=slurm, job_id=str(job_id)))
        cancelled = ok(await api.cancel.asyncio_detailed(client=slurm, job_id=str(job_id)))
        after = ok(await api.job.asyncio_detailed(client=slurm, job_id=str(job_id)))
    (info,) = read.jobs
    (info_after,) = after.jobs
    answers = (ping, nodes, partitions, submitted, read, cancelled)
    return Seen(
        answer_types=tuple(type(answer).__name__ for answer in answers),
        cluster=ping.meta.slurm.cluster,
        data_parser=ping.meta.plugin.data_parser,
        pings=tuple(sorted((p.hostname, p.responding) for p in ping.pings)),
        nodes=tuple(sorted(n.name for n in nodes.nodes)),
        partitions=tuple(sorted(p.name for p in partitions.partitions)),
        job_id=job_id,
        job_user=info.user_name,
        job_account=info.account,
        job_name=info.name,
        job_partition=info.partition,
        job_state=tuple(state.value for state in info.job_state),
        state_reason=info.state_reason,
        queued=queued,
        cancel_failures=tuple(
            f"{item.step_id}: {item.error.message}"
            for item in cancelled.status
            if item.error and item.error.code
        ),
        state_after_cancel=tuple(state.value for state in info_after.job_state),
    )


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("suite_name", SUITES)
async def test_generated_client_works_unchanged_through_the_gateway(
    lab: Lab, tmp_path: Path, suite_name: str, auth: Auth, api: Api
) -> None:
    suite = lab.suites[suite_name]
    submitted: list[int] = []

    async def squeue(job_id: int) -> str:
        submitted.append(job_id)
        done = await asyncio.to_thread(
            suite.run, "squeue", "-h", "-j", str(job_id), "-o", "%u|%a|%T"
        )
        return done.stdout.strip()

    tokens_file = tmp_path / "tokens.toml"
    gateway_token = create_token(
        tokens_file, "alice", scopes=("slurm:read", "slurm:jobs:manage"), accounts=("physics",)
    )
    server = TestServer(build_app(gateway_settings(suite, "http", tokens_file)), host="127.0.0.1")
    try:
        direct = await use_slurm(
            api, suite.url, suite.token("alice"), auth=auth, while_queued=squeue
        )
        await server.start_server()
        gateway_url = f"http://{server.host}:{server.port}"
        assert gateway_url != suite.url
        via_gateway = await use_slurm(
            api, gateway_url, gateway_token, auth=auth, while_queued=squeue
        )
    finally:
        await server.close()
        for job_id in submitted:  # only matters when a run failed before its cancel
            await asyncio.to_thread(suite.run, "scancel", str(job_id))

    assert via_gateway == direct
    assert via_gateway.job_id != direct.job_id
    tag = api.version.replace(".", "").upper()
    assert direct.answer_types == (
        f"{tag}OpenapiPingArrayResp",
        f"{tag}OpenapiNodesResp",
        f"{tag}OpenapiPartitionResp",
        f"{tag}OpenapiJobSubmitResponse",
        f"{tag}OpenapiJobInfoResp",
        f"{tag}OpenapiKillJobResp",
    )
    assert direct.cluster == suite.cluster
    assert direct.data_parser == f"data_parser/{api.version}"
    assert [responding for _, responding in direct.pings] == [True]
    assert direct.nodes == ("n1", "n2")
    assert direct.partitions == ("batch", "debug")
    assert (direct.job_user, direct.job_account) == ("alice", "physics")
    assert (direct.job_name, direct.job_partition) == ("sg-third-party", "debug")
    assert (direct.job_state, direct.state_reason) == (("PENDING",), "JobHeldUser")
    assert direct.queued == "alice|physics|PENDING"
    assert direct.cancel_failures == ()
    assert direct.state_after_cancel == ("CANCELLED",)


@pytest.mark.parametrize("suite_name", SUITES)
async def test_published_spec_cannot_read_a_pending_job(
    lab: Lab, suite_name: str, published_api: Api
) -> None:
    """Why codegen has ``nullable_job_resources``; fails once slurmrestd's spec allows the null."""
    suite = lab.suites[suite_name]
    version = published_api.version
    token = suite.token("alice")
    body = {
        "job": {
            "name": "sg-third-party",
            "script": "#!/bin/sh\nsleep 300\n",
            "account": "physics",
            "current_working_directory": "/",
            "environment": ["PATH=/usr/bin:/bin"],
            "hold": True,
        }
    }
    headers = {"X-SLURM-USER-TOKEN": token}
    async with httpx.AsyncClient(base_url=suite.url, headers=headers) as raw:
        submitted = (await raw.post(f"/slurm/{version}/job/submit", json=body)).json()
        assert submitted["errors"] == [], submitted["errors"]
        job_id = str(submitted["job_id"])
        try:
            job = (await raw.get(f"/slurm/{version}/job/{job_id}")).json()
            assert job["jobs"][0]["job_resources"] is None
            client = published_api.client(base_url=suite.url, headers=headers)
            async with client as slurm:
                with pytest.raises(TypeError, match="'NoneType' object is not iterable"):
                    await published_api.job.asyncio_detailed(client=slurm, job_id=job_id)
        finally:
            await raw.delete(f"/slurm/{version}/job/{job_id}")
