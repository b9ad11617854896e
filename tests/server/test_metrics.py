"""``GET /metrics`` and what it exports (server/ops/metrics.py, server/ops/collectors.py), against a
scripted fake slurmrestd: the scope, the formats, one registry per app, the cache's counters and
state, the SlurmUser token, bounded labels."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from slurmgate.server.keys import CACHE, METRICS
from slurmgate.server.ops.collectors import CacheCollector, TokenCollector
from slurmgate.server.ops.metrics import RequestCollector, RequestTally
from tests.server.fake_gateway import Gateway, V, free_port, start

NODES = f"/slurm/{V}/nodes/"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with start(tmp_path) as gateway:
        yield gateway


async def scrape(gw: Gateway) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Metric sample name -> [(labels, value)] as Prometheus reads /metrics."""
    response = await gw.get("/metrics", user="ops")
    assert response.status == 200, await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    (found,) = [v for have, v in samples[name] if all(have.get(k) == x for k, x in labels.items())]
    return found


async def test_metrics_need_a_token_with_the_metrics_scope(gw: Gateway) -> None:
    anonymous = await gw.get("/metrics", user=None)
    assert anonymous.status == 401
    assert "WWW-Authenticate" in anonymous.headers
    (error,) = json.loads(await anonymous.read())["errors"]
    assert error["error_number"] == 401
    forbidden = await gw.get("/metrics", user="alice")
    assert forbidden.status == 403
    (error,) = json.loads(await forbidden.read())["errors"]
    assert error["source"] == "scope:slurmgate:metrics"
    allowed = await gw.get("/metrics", user="ops")
    assert allowed.status == 200
    assert allowed.headers["Content-Type"].startswith("text/plain; version=")
    assert allowed.headers["Cache-Control"] == "no-store"


async def test_openmetrics_when_asked(gw: Gateway) -> None:
    response = await gw.get(
        "/metrics", user="ops", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def test_the_cache_counters_are_the_stores_own(gw: Gateway) -> None:
    await gw.get(NODES)
    await gw.get(NODES)
    await gw.get(NODES, **{"Cache-Control": "no-store"})
    await gw.client.post(
        f"/slurm/{V}/job/submit",
        json={"job": {"script": "#!/bin/sh\n"}},
        headers={"Authorization": f"Bearer {gw.tokens['alice']}"},
    )
    store = gw.client.app[CACHE]
    assert store is not None
    samples = await scrape(gw)
    for outcome, count in (("hit", 1), ("miss", 1), ("bypass", 1), ("stale", 0)):
        assert value(samples, "slurmgate_cache_requests_total", outcome=outcome) == count
    stats = store.stats
    assert value(samples, "slurmgate_cache_stores_total") == stats.stores == 1
    assert value(samples, "slurmgate_cache_fetches_total") == stats.fetches == 1
    assert value(samples, "slurmgate_cache_invalidations_total") == stats.invalidations == 1
    for name in ("shared", "peer_fills", "not_stored", "backend_errors"):
        assert value(samples, f"slurmgate_cache_{name}_total") == getattr(stats, name) == 0
    assert value(samples, "slurmgate_cache_available", backend="memory") == 1
    assert value(samples, "slurmgate_cache_fills_in_flight") == 0


async def test_an_unreachable_redis_reads_unavailable(tmp_path: Path) -> None:
    redis = {"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    async with start(tmp_path, cache=redis) as gw:
        assert (await gw.get(NODES)).status == 200
        samples = await scrape(gw)
        assert value(samples, "slurmgate_cache_available", backend="redis") == 0
        assert value(samples, "slurmgate_cache_backend_errors_total") >= 1
        assert value(samples, "slurmgate_cache_requests_total", outcome="bypass") == 1


async def test_no_cache_metrics_with_the_cache_off(tmp_path: Path) -> None:
    async with start(tmp_path, cache={"backend": "off"}) as gw:
        await gw.get(NODES)
        samples = await scrape(gw)
        assert not [name for name in samples if name.startswith("slurmgate_cache_")]
        assert value(samples, "slurmgate_requests_total", status="200", method="GET") == 1


async def test_the_slurm_user_token(gw: Gateway) -> None:
    samples = await scrape(gw)
    assert value(samples, "slurmgate_slurm_user_token_valid") == 1
    assert value(samples, "slurmgate_slurm_user_token_renewal_failures") == 0
    assert 0 <= value(samples, "slurmgate_slurm_user_token_age_seconds") < 60
    # slurm_user_token.lifespan: 600 s by default
    assert 540 < value(samples, "slurmgate_slurm_user_token_expires_in_seconds") <= 600


async def test_upstream_calls_are_timed_by_purpose(gw: Gateway) -> None:
    await gw.get(NODES)
    samples = await scrape(gw)
    count = "slurmgate_upstream_request_duration_seconds_count"
    assert value(samples, count, purpose="forward") == 1
    assert value(samples, count, purpose="versions") == 1  # the discovery at start


async def test_process_metrics_are_prefixed(gw: Gateway) -> None:
    samples = await scrape(gw)
    assert value(samples, "slurmgate_process_resident_memory_bytes") > 0


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with start(tmp_path / "a") as one, start(tmp_path / "b") as two:
        await one.get(NODES)
        assert one.client.app[METRICS].registry is not two.client.app[METRICS].registry
        samples = await scrape(two)
        assert value(samples, "slurmgate_cache_requests_total", outcome="miss") == 0
    # never the process-wide default registry
    assert REGISTRY.get_sample_value("slurmgate_requests_total") is None
    assert "slurmgate_requests" not in {m.name for m in REGISTRY.collect()}


async def test_label_values_never_hold_users_or_raw_paths(gw: Gateway) -> None:
    await gw.get(f"/slurm/{V}/job/4242")
    await gw.get("/random/path/alice")
    await gw.get(NODES, user="bob")
    samples = await scrape(gw)
    labels = {v for entries in samples.values() for have, _ in entries for v in have.values()}
    for text in ("alice", "bob", "4242", "/random"):
        assert not [label for label in labels if text in label], text
    operations = {have["operation"] for have, _ in samples["slurmgate_requests_total"]}
    assert operations == {"slurm_v0045_get_job", "none", "slurm_v0045_get_nodes"}


def test_the_collectors_export_nothing_before_the_app_has_started() -> None:
    assert list(CacheCollector(lambda: None, "memory").collect()) == []
    assert list(TokenCollector(lambda: None).collect()) == []
    names = {metric.name for metric in CacheCollector(lambda: None, "memory").describe()}
    assert "slurmgate_cache_requests" in names


def test_request_durations_fall_in_prometheus_le_buckets() -> None:
    tally = RequestTally()
    registry = CollectorRegistry()
    registry.register(RequestCollector(tally))
    tally.add("op", "GET", 200, "allow", 0.001)  # on a bound: counted in that bucket (le)
    tally.add("op", "GET", 200, "allow", 0.0011)
    tally.add("op", "GET", 200, "allow", 100.0)  # past the last bound: +Inf only
    tally.add("op", "BREW", 405, "none", 0.5)  # a method outside the known set: "other"
    value = registry.get_sample_value
    bucket = "slurmgate_request_duration_seconds_bucket"
    assert value(bucket, {"operation": "op", "le": "0.001"}) == 1
    assert value(bucket, {"operation": "op", "le": "0.0025"}) == 2
    assert value(bucket, {"operation": "op", "le": "60.0"}) == 3
    assert value(bucket, {"operation": "op", "le": "+Inf"}) == 4
    assert value("slurmgate_request_duration_seconds_count", {"operation": "op"}) == 4
    assert value("slurmgate_request_duration_seconds_sum", {"operation": "op"}) == pytest.approx(
        100.5021
    )
    labels = {"operation": "op", "method": "GET", "status": "200", "decision": "allow"}
    assert value("slurmgate_requests_total", labels) == 3
    other = {"operation": "op", "method": "other", "status": "405", "decision": "none"}
    assert value("slurmgate_requests_total", other) == 1
