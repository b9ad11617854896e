"""A quick check of the benchmark harness (the benchmark itself is ``make bench``)."""

from __future__ import annotations

from pathlib import Path

from tests.bench.bare import BareServer
from tests.bench.load import PlanLine, mixed_script, parse_wrk, run_wrk, stats_script, write_plan
from tests.bench.measure import UpstreamLog, fold_kinds
from tests.bench.nginx import check_config
from tests.bench.procs import free_port, usage
from tests.bench.scenarios import parse_collapsed

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1/x
BENCH-RESULT requests=1200 duration_us=1000000 bytes=9000 connect=0 read=1 write=0 status=2 \
timeout=0 p50_us=250 p90_us=400 p99_us=1500 max_us=3000
"""


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests, result.rps, result.errors, result.bad_status) == (1200, 1200.0, 3, 2)
    assert (result.p50_ms, result.p99_ms) == (0.25, 1.5)


def test_wrk_against_bare_server(tmp_path: Path) -> None:
    """One short wrk run, fixed and mixed, against the bare server: parsed, counted, no errors."""
    body = b'{"nodes": []}'
    server = BareServer(tmp_path / "bare", {"/a/": body, "/b/": body})
    try:
        result = run_wrk(
            server.url + "/a/", stats_script(tmp_path), connections=2, duration=1, timeout=5
        )
        assert result.requests > 100
        assert result.errors == 0
        assert 0 < result.p50_ms <= result.p99_ms
        plan = write_plan(
            tmp_path / "plan",
            [PlanLine(3, "GET", "/a/", "Bearer x"), PlanLine(1, "GET", "/b/", "Bearer y")],
        )
        mixed = run_wrk(
            server.url + "/",
            mixed_script(tmp_path),
            connections=2,
            duration=1,
            script_args=[str(plan), "1"],
            timeout=5,
        )
        assert mixed.requests > 100
        assert mixed.errors == 0
        assert usage(server.pids()).cpu > 0
    finally:
        server.stop()


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    output = check_config(
        tmp_path / "nginx",
        upstream_port=free_port(),
        cache_port=free_port(),
        plain_port=free_port(),
        workers=1,
        valid_seconds=10,
    )
    assert "test is successful" in output
    conf = (tmp_path / "nginx" / "nginx.conf").read_text()
    for directive in ("proxy_cache_lock on;", "proxy_cache_use_stale updating", "keepalive 64;"):
        assert directive in conf


def test_upstream_log_counts_only_new_requests(tmp_path: Path) -> None:
    log = tmp_path / "slurmrestd.log"
    line = "[t] operations_router: [127.0.0.1:1(fd:9)] {} {}\n"
    log.write_text(line.format("GET", "/slurm/v0.0.45/nodes/"))
    upstream = UpstreamLog(log)
    with log.open("a") as f:
        f.write(line.format("GET", "/slurm/v0.0.45/job/12"))
        f.write(line.format("GET", "/slurm/v0.0.45/job/13"))
        f.write("[t] rest_auth/jwt: something else\n")
        f.write(line.format("POST", "/slurm/v0.0.45/job/submit"))
    assert fold_kinds(upstream.since_mark()) == {
        "GET /slurm/v0.0.45/job/{id}": 2,
        "POST /slurm/v0.0.45/job/submit": 1,
    }


def test_parse_collapsed_stacks() -> None:
    samples, own, total = parse_collapsed("a (x.py:1);b (x.py:2) 3\na (x.py:1);c (x.py:3) 1\n")
    assert samples == 4
    assert own[0] == (75.0, "b (x.py:2)")
    assert total[0] == (100.0, "a (x.py:1)")
