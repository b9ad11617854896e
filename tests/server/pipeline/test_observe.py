"""The observe step against a scripted fake slurmrestd: the access log line's fields, no secret in
any log, the request id (accepted, replaced, returned on errors), and the request metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from slurmgate.server.keys import METRICS, SLURM_USER_TOKEN
from slurmgate.server.ops.logs import JsonFormatter
from slurmgate.server.pipeline.chain import Steps, pipeline
from slurmgate.server.pipeline.observe import Observer
from tests.server.fake_gateway import Gateway, V, free_port, start

NODES = f"/slurm/{V}/nodes/"
FIELDS = [
    "time",
    "request_id",
    "remote",
    "method",
    "operation",
    "path",
    "user",
    "auth_method",
    "token_name",
    "decision",
    "cache",
    "upstream_status",
    "upstream_seconds",
    "status",
    "seconds",
    "bytes",
]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with start(tmp_path) as gateway:
        yield gateway


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access log as slurmgate serve writes it: one JSON object per line."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "slurmgate.access" and hasattr(record, "access")
    ]


def sample(gw: Gateway, name: str, **labels: str) -> float:
    value = gw.client.app[METRICS].registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_miss_and_a_hit_are_logged_with_every_field(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    first = await gw.get(NODES)
    second = await gw.get(NODES)
    miss, hit = access_lines(caplog)
    assert list(miss) == FIELDS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", miss["time"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", miss["request_id"])
    assert miss["request_id"] == first.headers["X-Request-ID"]
    assert hit["request_id"] == second.headers["X-Request-ID"] != miss["request_id"]
    assert miss["remote"] == "127.0.0.1"
    assert miss["method"] == "GET"
    assert miss["operation"] == "slurm_v0045_get_nodes"
    assert miss["path"] == f"/slurm/{V}/nodes/"
    assert miss["user"] == "alice"
    assert miss["auth_method"] == "token"
    assert miss["token_name"].startswith("alice-")
    assert miss["decision"] == "allow"
    assert (miss["cache"], hit["cache"]) == ("MISS", "HIT")
    assert miss["upstream_status"] == 200
    assert 0 < miss["upstream_seconds"] <= miss["seconds"]
    # a hit made no upstream call
    assert (hit["upstream_status"], hit["upstream_seconds"]) == (None, None)
    assert miss["status"] == hit["status"] == 200
    assert miss["bytes"] == hit["bytes"] == len(await first.read())


async def test_the_text_form_of_the_record_is_one_short_line(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    response = await gw.get(NODES)
    (record,) = [r for r in caplog.records if r.name == "slurmgate.access"]
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(
        rf"{request_id} GET slurm_v0045_get_nodes 200 \d+\.\d{{3}}s", record.getMessage()
    )


async def test_no_secret_reaches_any_log(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = gw.tokens["alice"]
    await gw.client.get(NODES, headers={"Authorization": f"Bearer {secret}"})
    await gw.client.get(NODES, headers={"X-SLURM-USER-TOKEN": gw.tokens["bob"]})
    await gw.client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})  # 403
    wrong = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert (await gw.client.get(NODES, headers={"Authorization": f"Bearer {wrong}"})).status == 401
    sent_upstream = {h["X-SLURM-USER-TOKEN"] for h in gw.upstream.headers}
    assert sent_upstream == {await gw.client.app[SLURM_USER_TOKEN].get()}
    text = caplog.text + "\n".join(json.dumps(line) for line in access_lines(caplog))
    assert len(access_lines(caplog)) == 4
    for value in (secret, gw.tokens["bob"], wrong, *sent_upstream):
        assert value not in text
        assert value[-20:] not in text  # not even its end


async def test_a_safe_request_id_is_kept(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    response = await gw.get(NODES, **{"X-Request-ID": "lb-7f3a.2_x"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.2_x"
    (line,) = access_lines(caplog)
    assert line["request_id"] == "lb-7f3a.2_x"
    # never sent upstream: slurmrestd ignores it
    assert all("X-Request-ID" not in headers for headers in gw.upstream.headers)


@pytest.mark.parametrize(
    "given", ["", "two words", "x" * 65, "<script>", 'quote"d', "tab\there", "a/b"]
)
async def test_an_unsafe_request_id_is_replaced(gw: Gateway, given: str) -> None:
    response = await gw.get(NODES, **{"X-Request-ID": given})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", response.headers["X-Request-ID"])


async def test_generated_request_ids_differ(gw: Gateway) -> None:
    ids = {(await gw.get(NODES)).headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


async def test_two_request_ids_are_replaced(gw: Gateway) -> None:
    response = await gw.client.get(
        NODES,
        headers=[
            ("Authorization", f"Bearer {gw.tokens['alice']}"),
            ("X-Request-ID", "one"),
            ("X-Request-ID", "two"),
        ],
    )
    assert response.headers["X-Request-ID"] not in ("one", "two")


#: path, user, status, decision, operation
ERRORS = [
    (NODES, None, 401, "unauthenticated", "slurm_v0045_get_nodes"),
    (f"/slurmdb/{V}/accounts/", "alice", 403, "deny", "slurmdb_v0045_get_accounts"),
    ("/no/such/path", "alice", 404, None, None),
    ("/slurm/v0.0.39/nodes/", "alice", 404, None, None),
    ("/metrics", "alice", 403, "deny", "slurmgate_get_metrics"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[f"{c[2]}-{c[0]}" for c in ERRORS])
async def test_errors_carry_the_request_id_and_are_logged(
    gw: Gateway,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, str | None, int, str | None, str | None],
) -> None:
    path, user, status, decision, operation = case
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    response = await gw.get(path, user=user, **{"X-Request-ID": "err-1"})
    assert response.status == status
    assert response.headers["X-Request-ID"] == "err-1"
    assert json.loads(await response.read())["errors"][0]["error_number"] == status
    (line,) = access_lines(caplog)
    assert (line["status"], line["decision"], line["operation"]) == (status, decision, operation)
    assert line["bytes"] == len(await response.read())
    if operation is None:
        assert line["path"] == path  # matched nothing: the raw path, without a query
    assert (
        sample(
            gw,
            "slurmgate_requests_total",
            operation=operation or "none",
            method="GET",
            status=str(status),
            decision=decision or "none",
        )
        == 1
    )


async def test_an_unmatched_path_is_logged_short_and_without_its_query(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    await gw.get("/x" * 200 + "?secret=1")
    (line,) = access_lines(caplog)
    assert line["path"] == ("/x" * 200)[:128]


async def test_requests_are_counted_by_operation_method_status_and_decision(
    gw: Gateway,
) -> None:
    await gw.get(NODES)  # miss
    await gw.get(NODES)  # hit
    await gw.get(NODES, user=None)  # 401
    await gw.get(f"/slurmdb/{V}/accounts/")  # 403
    await gw.client.request("PROPFIND", NODES)  # 405: a method no route has
    nodes = {"operation": "slurm_v0045_get_nodes", "method": "GET"}
    assert sample(gw, "slurmgate_requests_total", **nodes, status="200", decision="allow") == 2
    assert (
        sample(gw, "slurmgate_requests_total", **nodes, status="401", decision="unauthenticated")
        == 1
    )
    assert (
        sample(
            gw,
            "slurmgate_requests_total",
            operation="slurmdb_v0045_get_accounts",
            method="GET",
            status="403",
            decision="deny",
        )
        == 1
    )
    assert (
        sample(
            gw,
            "slurmgate_requests_total",
            operation="none",
            method="other",
            status="405",
            decision="none",
        )
        == 1
    )
    count = "slurmgate_request_duration_seconds_count"
    assert sample(gw, count, operation="slurm_v0045_get_nodes") == 3
    assert sample(gw, "slurmgate_cache_requests_total", outcome="miss") == 1
    assert sample(gw, "slurmgate_cache_requests_total", outcome="hit") == 1
    assert sample(gw, "slurmgate_upstream_request_duration_seconds_count", purpose="forward") == 1


async def test_an_upstream_failure_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    async with start(tmp_path, upstream_url=f"http://127.0.0.1:{free_port()}") as gw:
        response = await gw.get(NODES)
        assert response.status == 502
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", response.headers["X-Request-ID"])
        (line,) = [line for line in access_lines(caplog) if line["path"] == f"/slurm/{V}/nodes/"]
        assert (line["status"], line["decision"], line["cache"]) == (502, "allow", "MISS")
        assert line["upstream_status"] is None
        assert line["upstream_seconds"] is not None
        assert sample(gw, "slurmgate_upstream_errors_total", kind="unavailable") >= 1
        labels = {"operation": "slurm_v0045_get_nodes", "method": "GET", "decision": "allow"}
        assert sample(gw, "slurmgate_requests_total", **labels, status="502") == 1


async def test_an_upstream_timeout_is_counted(tmp_path: Path) -> None:
    async with start(tmp_path, upstream={"timeout": 0.2}) as gw:
        gw.upstream.held.add(NODES)  # never released before the gateway gives up
        assert (await gw.get(NODES)).status == 504
        assert sample(gw, "slurmgate_upstream_errors_total", kind="timeout") == 1
        assert sample(gw, "slurmgate_upstream_errors_total", kind="unavailable") == 0


async def test_only_the_request_that_called_upstream_logs_the_call(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")
    gw.upstream.held.add(NODES)
    leader = asyncio.create_task(gw.get(NODES, **{"X-Request-ID": "leader"}))
    await gw.upstream.arrived.wait()  # the leader's upstream call is under way
    waiter = asyncio.create_task(gw.get(NODES, user="bob", **{"X-Request-ID": "waiter"}))
    for _ in range(100_000):  # yield (no clock involved) until the waiter joined the fill
        if sample(gw, "slurmgate_cache_fill_waiters") == 2:
            break
        await asyncio.sleep(0)
    assert sample(gw, "slurmgate_cache_fill_waiters") == 2
    gw.upstream.release.set()
    await asyncio.gather(leader, waiter)
    lines = {line["request_id"]: line for line in access_lines(caplog)}
    assert lines["leader"]["upstream_status"] == 200
    assert lines["waiter"]["upstream_status"] is None
    assert lines["leader"]["cache"] == lines["waiter"]["cache"] == "MISS"
    assert gw.upstream.calls[NODES] == 1
    assert sample(gw, "slurmgate_cache_shared_total") == 1


async def test_a_client_that_goes_away_is_logged_as_499(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slurmgate.access")

    async def gone(request: web.Request) -> web.StreamResponse:
        raise asyncio.CancelledError

    async def nothing(request: web.Request) -> None:
        return None

    steps = Steps(
        observe=Observer(),
        route=lambda request: None,
        authenticate=nothing,
        refused=lambda request, refusal: None,
        limit=lambda request: None,
        authorize=nothing,
        supported=lambda request: (),
    )
    request = make_mocked_request("GET", "/slow", app=web.Application())
    with pytest.raises(asyncio.CancelledError):
        await pipeline(steps)(request, gone)
    (record,) = caplog.records
    assert record.access["status"] == 499  # type: ignore[attr-defined]


async def test_nothing_is_formatted_when_the_access_log_is_off(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="slurmgate.access")
    await gw.get(NODES)
    assert access_lines(caplog) == []
    # metrics are counted all the same
    assert sample(gw, "slurmgate_request_duration_seconds_count", operation="slurm_v0045_get_nodes")
