"""Issue 4's corpus: crafted mutating requests through the gateway against the real lab.

Every case of ``authorize_corpus.CASES`` runs in every suite/API version where its operation
exists, with a gateway of its own in front of the real slurmrestd. Before and after the request
Slurm itself is asked what it holds (squeue for the case's jobs, sacctmgr for associations,
accounts and users): a refused request must leave both unchanged, an allowed one must answer 200
and show exactly its effect. Each case makes its own jobs (named for the case) and its own
``sgt<hex>`` account, and removes them afterwards, even when it fails; the last test checks that
the seeded associations and accounts are as they were when the module started.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from slurmgate.server.app import build_app
from tests.lab.env import Lab, LabSuite, suite_versions, throwaway_account
from tests.server.authorize_corpus import (
    CASES,
    SPARE_USERS,
    TOKENS,
    Allowed,
    Case,
    Ctx,
    JobSpec,
    Snapshot,
)
from tests.server.gateway import create_token, gateway_settings

pytestmark = pytest.mark.lab

RUNS = [(s, v, case) for s, v in suite_versions() for case in CASES if case.applies(v)]
#: seconds a not-held batch job may take to run and end
END_TIMEOUT = 20.0
_LIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One tokens file for the module, with every token of the corpus."""
    path = tmp_path_factory.mktemp("corpus") / "tokens.toml"
    secrets = {
        name: create_token(path, user, scopes=scopes, accounts=accounts)
        for name, (user, scopes, accounts) in TOKENS.items()
    }
    return path, secrets


def seeded_state(suite: LabSuite) -> tuple[list[str], list[str]]:
    """Every association and every account, as sacctmgr lists them."""
    assocs = suite.run("sacctmgr", "-n", "-P", "show", "assoc", "format=cluster,account,user")
    accounts = suite.run("sacctmgr", "-n", "-P", "show", "account")
    return sorted(assocs.stdout.splitlines()), sorted(accounts.stdout.splitlines())


@pytest.fixture(scope="module")
def seeded(lab: Lab) -> dict[str, tuple[list[str], list[str]]]:
    """The seeded slurmdb state of each suite when the module starts."""
    return {name: seeded_state(suite) for name, suite in lab.suites.items()}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateways(
    lab: Lab, tokens: tuple[Path, dict[str, str]]
) -> AsyncIterator[dict[str, TestClient[Any, Any]]]:
    """A gateway in front of each suite (every version it serves), for the whole module."""
    clients: dict[str, TestClient[Any, Any]] = {}
    try:
        for name, suite in lab.suites.items():
            app = build_app(gateway_settings(suite, "http", tokens[0]))
            clients[name] = TestClient(TestServer(app))
            await clients[name].start_server()
        yield clients
    finally:
        for client in clients.values():
            await client.close()


def snapshot(suite: LabSuite, ctx: Ctx, case: Case) -> Snapshot:
    """What the case could change: its jobs as slurmctld has them (job routes, and the set of
    job ids of its name), or the slurmdb entities as slurmdbd has them (slurmdb routes)."""
    if not case.path.startswith("/slurmdb/"):
        out = suite.run("squeue", "-h", "-n", ctx.name, "-t", "all", "-o", "%i|%a|%T|%k").stdout
        return Snapshot(dict(line.split("|", 1) for line in out.splitlines()), frozenset())
    db: set[str] = set()
    for kind, args in (
        ("assoc", ("assoc", "format=cluster,account,user,parentname")),
        ("account", ("account", "format=account,description,organization")),
        ("user", ("user", "format=user,defaultaccount,admin")),
    ):
        lines = suite.run("sacctmgr", "-n", "-P", "show", *args).stdout.splitlines()
        db.update(f"{kind}|{line}" for line in lines)
    return Snapshot({}, frozenset(db))


def make_job(suite: LabSuite, ctx: Ctx, spec: JobSpec) -> str:
    """Submit ``spec`` with sbatch as its user (held, unless it must have run); its job id."""
    args = ["sbatch", "--parsable", "-J", ctx.name, "-A", spec.accounts[0], "--wrap", "sleep 300"]
    if not spec.finished:
        args.insert(2, "-H")
    for account in spec.accounts[1:]:
        args += [":", "-A", account]
    job = suite.run(*args, user=spec.user).stdout.strip().split(";")[0]
    if spec.finished:
        deadline = time.monotonic() + END_TIMEOUT
        while suite.run("squeue", "-h", "-j", job, "-t", "all", "-o", "%T").stdout.strip() in _LIVE:
            assert time.monotonic() < deadline, f"job {job} did not end"
            time.sleep(0.05)
    return job


def prepare(suite: LabSuite, ctx: Ctx, case: Case) -> None:
    """What the case needs in Slurm before its request."""
    for spec in case.jobs:
        ctx.jobs[spec.label] = make_job(suite, ctx, spec)
    if "account" in case.db:
        suite.run("sacctmgr", "-i", "add", "account", ctx.acct, f"cluster={suite.cluster}",
                  "description=sgt", "organization=sgt")  # fmt: skip
    if "member" in case.db:
        suite.run("sacctmgr", "-i", "add", "user", "alice,lp", f"account={ctx.acct}",
                  f"cluster={suite.cluster}")  # fmt: skip
    if "physics" in case.db:  # removed with lp at the end
        suite.run("sacctmgr", "-i", "add", "user", "lp", "account=physics",
                  f"cluster={suite.cluster}")  # fmt: skip


def clean_up(suite: LabSuite, ctx: Ctx, case: Case, before: Snapshot | None) -> None:
    """Remove whatever the case or its request made; put back what its request changed."""
    if not case.path.startswith("/slurmdb/"):
        suite.run("scancel", "-n", ctx.name)
        return
    now = snapshot(suite, ctx, case) if before is not None else None
    spare = [u for u in SPARE_USERS if now is None or any(f"user|{u}|" in x for x in now.db)]
    made = now is None or any(f"|{ctx.acct}|" in line for line in now.db)
    for args, needed in (
        (("user", ",".join(spare)), bool(spare)),
        (("user", "alice", f"account={ctx.acct}"), made),
        (("account", ctx.acct), made),
    ):
        if needed:
            with contextlib.suppress(subprocess.CalledProcessError):  # nothing to delete
                suite.run("sacctmgr", "-i", "delete", *args)
    if before is not None and now is not None:
        restore(suite, ctx, before.db, now.db)


def restore(suite: LabSuite, ctx: Ctx, before: frozenset[str], now: frozenset[str]) -> None:
    """Undo a request's changes to the seeded users' associations and default accounts.

    Only a request the gateway wrongly let through changes them; the test fails then, and the
    other tests still find the seeded state.
    """
    for line in sorted(before ^ now):
        kind, *fields = line.split("|")
        if kind == "assoc" and fields[2] and fields[2] not in SPARE_USERS:
            cluster, account, user, _ = fields
            if account != ctx.acct:
                verb = "add" if line in before else "delete"
                suite.run("sacctmgr", "-i", verb, "user", user, f"account={account}",
                          f"cluster={cluster}")  # fmt: skip
    for line in sorted(before - now):
        kind, *fields = line.split("|")
        if kind == "user" and fields[0] not in SPARE_USERS and fields[1]:
            suite.run("sacctmgr", "-i", "modify", "user", fields[0], "set",
                      f"defaultaccount={fields[1]}")  # fmt: skip


class CaseRun:
    """A case's context in Slurm: made before the request, removed afterwards whatever happens."""

    def __init__(self, suite: LabSuite, version: str, case: Case) -> None:
        self.ctx = Ctx(version, suite.cluster, f"sgt-{uuid.uuid4().hex[:8]}", throwaway_account())
        self.suite = suite
        self.case = case
        #: Slurm before the request, once taken
        self.before: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        """What Slurm holds now; the first one is kept as the state to restore."""
        taken = snapshot(self.suite, self.ctx, self.case)
        if self.before is None:
            self.before = taken
        return taken

    def __enter__(self) -> CaseRun:
        try:
            prepare(self.suite, self.ctx, self.case)
        except BaseException:
            clean_up(self.suite, self.ctx, self.case, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        clean_up(self.suite, self.ctx, self.case, self.before)


async def send(
    client: TestClient[Any, Any], secret: str, case: Case, ctx: Ctx
) -> tuple[int, dict[str, Any]]:
    """The case's request, its path and query sent byte for byte as written."""
    headers = {"Authorization": f"Bearer {secret}"}
    body = case.body(ctx) if case.body is not None else None
    if body is not None and case.content_type is not None:
        headers["Content-Type"] = case.content_type
    url = URL(str(client.make_url("")) + case.path.format(c=ctx), encoded=True)
    response = await client.session.request(
        case.method, url, data=body, headers=headers, skip_auto_headers=("Content-Type",)
    )
    return response.status, json.loads(await response.read())


# One event loop for the module, so that one gateway per suite serves every case (building one
# per test took 50-90 ms: half of the run).
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("run", RUNS, ids=[f"{s}-{v}-{case.id}" for s, v, case in RUNS])
async def test_crafted_request(
    lab: Lab,
    tokens: tuple[Path, dict[str, str]],
    gateways: dict[str, TestClient[Any, Any]],
    seeded: dict[str, tuple[list[str], list[str]]],
    run: tuple[str, str, Case],
) -> None:
    """One crafted request: refused with Slurm unchanged, or allowed with its effect in Slurm."""
    suite_name, version, case = run
    suite = lab.suites[suite_name]
    with CaseRun(suite, version, case) as slurm:
        ctx = slurm.ctx
        before = slurm.snapshot()
        status, answer = await send(gateways[suite_name], tokens[1][case.token], case, ctx)
        after = slurm.snapshot()
    request = f"{case.method} {case.path.format(c=ctx)} as {case.token}"
    if isinstance(case.expect, Allowed):
        assert status == 200, (request, status, answer)
        assert answer["errors"] == [], (request, answer["errors"])
        case.expect.effect(ctx, before, after)
        return
    assert status == case.expect.status, (request, status, answer)
    (error,) = answer["errors"]
    if case.expect.source is not None:
        assert error["source"] == case.expect.source, (request, error)
    assert after.jobs == before.jobs, (request, before.jobs, after.jobs)
    assert after.db == before.db, (request, sorted(after.db ^ before.db))


def test_seeded_state_is_restored(lab: Lab, seeded: dict[str, tuple[list[str], list[str]]]) -> None:
    """Runs last: the seeded associations and accounts are as the module found them."""
    for name, suite in lab.suites.items():
        assocs, accounts = seeded_state(suite)
        assert (assocs, accounts) == seeded[name], name
        for user, user_accounts in lab.users.items():
            for account in user_accounts:
                assert f"{suite.cluster}|{account}|{user}" in assocs, (name, user, account)
