"""Fakes for the job events: job dicts as slurmrestd writes them, a fake clock and a fake
slurmrestd that honours ``update_time`` the way slurmctld does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from slurmgate.server.events.records import JobRecord

__all__ = ["FakeJobsRestd", "V", "job", "record", "serve"]

V = "v0.0.45"


def job(
    job_id: int,
    state: str = "PENDING",
    *,
    user: str = "alice",
    account: str = "physics",
    partition: str = "debug",
    **more: object,
) -> dict[str, Any]:
    """A job as ``GET /slurm/v0.0.45/jobs`` lists it (the fields the poller reads, and some)."""
    number = {"set": True, "infinite": False, "number": 0}
    return {
        "job_id": job_id,
        "name": f"job{job_id}",
        "user_name": user,
        "account": account,
        "partition": partition,
        "job_state": state.split("+"),
        "state_reason": "None",
        "nodes": "",
        "array_job_id": number,
        "array_task_id": {"set": False, "infinite": False, "number": 0},
        "het_job_id": number,
        "submit_time": {"set": True, "infinite": False, "number": 1795000000 + job_id},
        "exit_code": {"status": ["SUCCESS"], "return_code": {"set": True, "number": 0}},
        "priority": {"set": True, "number": 1},
        **more,
    }


def record(job_id: int, state: str = "PENDING", **fields: object) -> JobRecord:
    """A JobRecord directly (for the pure modules' tests)."""
    values: dict[str, Any] = {"user": "alice", "account": "physics", "partition": "debug"}
    values.update(fields)
    return JobRecord(job_id=job_id, state=tuple(state.split("+")), **values)


@dataclass
class FakeJobsRestd:
    """``GET /slurm/V/jobs[?update_time=T]`` over a job table the test changes.

    Its clock ticks once per request; a change made by the test is newer than every answer sent
    so far, so the next request with an ``update_time`` gets the whole list, as with slurmctld.
    """

    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    now: int = 1_000
    last_change: int = 1_000
    #: update_time of every jobs request (0: none)
    asked: list[int] = field(default_factory=list)
    #: set on every jobs request (tests wait for the poller with it)
    polled: asyncio.Condition = field(default_factory=asyncio.Condition)
    #: status to answer instead of the jobs (502-like failures)
    failing: int | None = None

    def put(self, *items: dict[str, Any]) -> None:
        """Add or replace jobs (one change)."""
        for item in items:
            self.jobs[item["job_id"]] = item
        self.last_change = self.now + 1

    def remove(self, *job_ids: int) -> None:
        """Forget jobs (slurmctld purged them)."""
        for job_id in job_ids:
            del self.jobs[job_id]
        self.last_change = self.now + 1

    async def wait_polls(self, count: int, within: float = 10.0) -> None:
        """Wait until ``count`` more jobs requests have arrived."""
        target = len(self.asked) + count
        async with asyncio.timeout(within), self.polled:
            await self.polled.wait_for(lambda: len(self.asked) >= target)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/openapi/v3":
            return web.json_response({"paths": {f"/slurm/{V}/jobs": {}}})
        if request.path != f"/slurm/{V}/jobs":
            return web.json_response({"errors": [{"error": "no"}]}, status=404)
        self.now += 1
        since = int(request.query.get("update_time", "0"))
        self.asked.append(since)
        async with self.polled:
            self.polled.notify_all()
        if self.failing is not None:
            return web.Response(status=self.failing, body=b"{}")
        body: dict[str, Any] = {"meta": {}, "errors": [], "warnings": []}
        if since and self.last_change < since:
            body |= {
                "jobs": [],
                "last_update": {"set": True, "infinite": False, "number": 0},
                "warnings": [{"description": f"No job changes since update_time[{since}]"}],
            }
        else:
            body |= {
                "jobs": list(self.jobs.values()),
                "last_update": {"set": True, "infinite": False, "number": self.now},
            }
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")


@asynccontextmanager
async def serve(fake: FakeJobsRestd) -> AsyncIterator[str]:
    """``fake`` on a loopback port: its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
