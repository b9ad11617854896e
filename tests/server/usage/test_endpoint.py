"""GET /slurmgate/v1/usage in the gateway, in front of a scripted slurmrestd answering recorded
lab job records: scope, account patterns, bad input, slices, upstream failures, and the cache
step (hits, and entries never shared between tokens with different account patterns)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from slurmgate.server.endpoints.usage import MAX_SLICES_AT_ONCE
from slurmgate.server.usage.request import SLICE_SECONDS
from tests.server.fake_gateway import Gateway, V, start
from tests.server.gateway import create_token
from tests.server.usage.recorded import FORKY, RECORDINGS, answer, by_id

USAGE = "/slurmgate/v1/usage"
JOBS = f"/slurmdb/{V}/jobs"
RECORDS = by_id(answer(FORKY))
T0 = RECORDS[37411]["time"]["start"]  # alice/physics 2 CPUs 40 s, bob/chem 1 CPU 25 s,
# carol/chem 3 CPUs 15 s, carol/physics 1 CPU 60 s, all from T0 (see test_report.py)


@asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway; slurmrestd answers the forky recording (the four jobs from T0 and more).

    Tokens: carol (slurmdb:read), physics (carol, slurmdb:read, accounts ^physics$), phys
    (carol, slurmdb:read, accounts phys: a pattern that must match the whole name).
    """
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "carol": create_token(tokens_file, "carol", scopes=("slurmdb:read",)),
        "physics": create_token(
            tokens_file, "carol", scopes=("slurmdb:read",), accounts=("^physics$",)
        ),
        "phys": create_token(tokens_file, "carol", scopes=("slurmdb:read",), accounts=("phys",)),
    }
    async with start(tmp_path) as gw:
        gw.tokens.update(tokens)
        gw.upstream.answers[JOBS] = (200, (RECORDINGS / f"{FORKY}-jobs.json").read_bytes())
        yield gw


async def usage(gw: Gateway, query: str, user: str = "carol", **headers: str) -> tuple[int, Any]:
    response = await gw.get(f"{USAGE}?{query}", user, **headers)
    return response.status, json.loads(await response.read())


def cpu(data: dict[str, Any]) -> dict[tuple[str, ...], int]:
    keys = data["group_by"]
    return {tuple(g[k] for k in keys): g["tres_seconds"]["cpu"] for g in data["groups"]}


def sent(gw: Gateway) -> list[dict[str, str]]:
    """The queries of the jobs requests slurmrestd got."""
    return [dict(parse_qsl(urlsplit(t).query)) for t in gw.upstream.targets if t.startswith(JOBS)]


WINDOW = f"start={T0 + 10}&end={T0 + 30}"


async def test_a_report_in_slurmrestds_envelope(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, WINDOW + "&group_by=account,user")
        assert status == 200, data
        assert data["errors"] == []
        assert data["meta"]["slurmgate"] == {
            "api_version": V,
            "sources": [JOBS],
            "upstream_calls": 1,
        }
        assert data["meta"]["slurm"]["cluster"] == data["cluster"] == "forky"
        assert data["window"]["start_time"] == T0 + 10
        assert cpu(data) == {
            ("chem", "bob"): 15,
            ("chem", "carol"): 15,
            ("physics", "alice"): 40,
            ("physics", "carol"): 20,
        }
        (query,) = sent(gw)
        assert query == {
            "start_time": str(T0 + 10),
            "end_time": str(T0 + 30),
            "skip_steps": "true",
            "disable_truncate_usage_time": "true",
            "show_duplicates": "true",
        }
        # as carol, with the gateway's SlurmUser token
        assert gw.upstream.headers[-1]["X-SLURM-USER-NAME"] == "carol"


async def test_filters_are_sent_upstream_and_applied_again(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        # The recording holds chem jobs too, as if slurmdbd had ignored the filter.
        status, data = await usage(gw, WINDOW + "&account=physics&user=carol,alice&group_by=user")
        assert status == 200, data
        assert cpu(data) == {("alice",): 40, ("carol",): 20}
        assert sent(gw)[0]["account"] == "physics"
        assert sent(gw)[0]["users"] == "alice,carol"


async def test_the_scope_is_slurmdb_read(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, WINDOW, user="alice")  # slurm:read only
        assert status == 403
        assert data["errors"][0]["source"] == "scope:slurmdb:read"
        assert sent(gw) == []


async def test_an_account_limited_token_sees_only_its_accounts(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, WINDOW + "&group_by=account,user", user="physics")
        assert status == 200, data
        assert cpu(data) == {("physics", "alice"): 40, ("physics", "carol"): 20}
        # grouped by user, carol's chem job stays out of her total and bob is not there at all
        status, data = await usage(gw, WINDOW + "&group_by=user", user="physics")
        assert cpu(data) == {("alice",): 40, ("carol",): 20}
        assert data["total"]["jobs"] == 2


@pytest.mark.parametrize("accounts", ["chem", "physics,chem", "CHEM"])
async def test_naming_another_account_is_403(tmp_path: Path, accounts: str) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, f"{WINDOW}&account={accounts}", user="physics")
        assert status == 403
        assert data["errors"][0]["source"] == "account:chem"
        assert sent(gw) == []


async def test_patterns_match_whole_account_names(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, WINDOW, user="phys")
        assert status == 200
        assert data["groups"] == []
        status, data = await usage(gw, f"{WINDOW}&account=physics", user="phys")
        assert status == 403


async def test_answers_are_cached_per_account_patterns(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        first = await gw.get(f"{USAGE}?{WINDOW}", "carol")
        assert first.headers["X-Cache"] == "MISS"
        again = await gw.get(f"{USAGE}?{WINDOW}", "carol")
        assert again.headers["X-Cache"] == "HIT"
        assert await again.read() == await first.read()
        assert len(sent(gw)) == 1
        # Same user, same URL, a token limited to physics: computed for it, never carol's entry.
        limited = await gw.get(f"{USAGE}?{WINDOW}", "physics")
        assert limited.headers["X-Cache"] == "MISS"
        data = json.loads(await limited.read())
        assert cpu(data) == {("physics",): 60}
        assert len(sent(gw)) == 2
        limited = await gw.get(f"{USAGE}?{WINDOW}", "physics")
        assert limited.headers["X-Cache"] == "HIT"
        # A 403 is never stored, and a stored answer never stands in for one.
        status, _ = await usage(gw, f"{WINDOW}&account=chem", user="carol")
        assert status == 200
        status, _ = await usage(gw, f"{WINDOW}&account=chem", user="physics")
        assert status == 403


@pytest.mark.parametrize(
    ("query", "source", "says"),
    [
        ("end=now", "query:start", "required"),
        ("start=last+week", "query:start", "not a time"),
        ("start=2026-11-21T10:00:00", "query:start", "no time zone"),
        (f"start={T0}&end={T0 - 1}", "query:end", "before it starts"),
        (f"start={T0}&end={T0 + 367 * 86400}", "query:end", "366 days"),
        (f"start={T0}&group_by=partition", "query:group_by", "account, user, account,user"),
        (f"start={T0}&accounts=chem", "query:accounts", "unknown parameter"),
        (f"start={T0}&account=chem&account=physics", "query:account", "more than once"),
    ],
)
async def test_bad_queries_are_400_naming_where(
    tmp_path: Path, query: str, source: str, says: str
) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, query)
        assert status == 400
        (error,) = data["errors"]
        assert error["error_number"] == 400
        assert error["source"] == source
        assert says in error["description"]
        assert sent(gw) == []


async def test_accept_must_allow_json(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, WINDOW, Accept="text/html")
        assert status == 406
        assert data["errors"][0]["source"] == "Accept"


async def test_a_long_window_is_fetched_in_day_slices(tmp_path: Path) -> None:
    start = T0 - 3 * SLICE_SECONDS - 5
    end = T0 + 100  # in the past: only windows up to now are fetched
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, f"start={start}&end={end}")
        assert status == 200, data
        windows = sorted((int(q["start_time"]), int(q["end_time"])) for q in sent(gw))
        assert windows == [
            (start, start + SLICE_SECONDS),
            (start + SLICE_SECONDS, start + 2 * SLICE_SECONDS),
            (start + 2 * SLICE_SECONDS, start + 3 * SLICE_SECONDS),
            (start + 3 * SLICE_SECONDS, end),
        ]
        assert data["meta"]["slurmgate"]["upstream_calls"] == 4
        # every slice answered the same records: each counts once
        status, one = await usage(gw, f"start={T0 - 10}&end={T0 + 100}")
        assert cpu(data) == cpu(one)
        assert data["total"]["jobs"] == one["total"]["jobs"]


async def test_slices_are_fetched_a_few_at_a_time(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        gw.upstream.held.add(JOBS)
        request = asyncio.create_task(usage(gw, f"start={T0 - 10 * SLICE_SECONDS}&end={T0}"))
        async with asyncio.timeout(10):
            while gw.upstream.in_flight < MAX_SLICES_AT_ONCE:
                gw.upstream.arrived.clear()
                await gw.upstream.arrived.wait()
        await asyncio.sleep(0.2)  # room for a fifth call, which must not come
        assert gw.upstream.in_flight == MAX_SLICES_AT_ONCE
        gw.upstream.release.set()
        status, data = await request
        assert status == 200, data
        assert gw.upstream.peak == MAX_SLICES_AT_ONCE
        assert len(sent(gw)) == 10


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (500, b'{"errors": [{"description": "db down"}]}', "with 500: db down"),
        (200, b'{"jobs": [], "errors": [{"error": "nope"}], "meta": {}}', "reported errors"),
        (200, b"not json", "with 200"),
        (200, b'{"jobs": [], "errors": [], "meta": {}}', "meta.slurm.cluster"),
        (
            200,
            b'{"jobs": [{"job_id": 1}], "errors": [], "meta": {"slurm": {"cluster": "c"}}}',
            "job 1: no field cluster",
        ),
    ],
)
async def test_upstream_failures_are_502(
    tmp_path: Path, status: int, body: bytes, says: str
) -> None:
    async with gateway(tmp_path) as gw:
        gw.upstream.answers[JOBS] = (status, body)
        code, data = await usage(gw, WINDOW)
        assert code == 502
        assert data["errors"][0]["source"] == "slurmgate usage"
        assert says in data["errors"][0]["description"]


async def test_a_window_in_the_future_asks_nothing(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        status, data = await usage(gw, "start=2100-01-01&end=2100-01-02")
        assert status == 200, data
        assert data["groups"] == []
        assert sent(gw) == []
