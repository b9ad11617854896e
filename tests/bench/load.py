"""Load: wrk runs (fixed or mixed requests) and exact bursts of identical requests (stampedes).

Every run is bounded: wrk by ``--duration`` (and this module's subprocess timeout), a burst by its
count and :data:`BURST_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

__all__ = [
    "BURST_TIMEOUT",
    "Burst",
    "PlanLine",
    "WrkResult",
    "burst",
    "combine",
    "mixed_script",
    "parse_wrk",
    "run_wrk",
    "run_wrk_parallel",
    "stats_script",
    "write_plan",
]

LUA = Path(__file__).resolve().parent / "lua"
#: Seconds a burst may take in all.
BURST_TIMEOUT = 300.0
_RESULT = re.compile(r"^BENCH-RESULT (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    bytes: int
    #: socket errors (connect, read, write, timeout) plus answers with status >= 400
    errors: int
    #: answers with status >= 400 (wrk's "Non-2xx or 3xx responses")
    bad_status: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def parse_wrk(output: str) -> WrkResult:
    """The BENCH-RESULT line that ``lua/stats.lua`` prints, as a :class:`WrkResult`."""
    match = _RESULT.search(output)
    if match is None:
        raise ValueError(f"no BENCH-RESULT line in wrk's output:\n{output[-2000:]}")
    fields = {k: int(v) for k, v in (item.split("=") for item in match[1].split())}
    socket_errors = sum(fields[k] for k in ("connect", "read", "write", "timeout"))
    return WrkResult(
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        bytes=fields["bytes"],
        errors=socket_errors + fields["status"],
        bad_status=fields["status"],
        p50_ms=fields["p50_us"] / 1000,
        p90_ms=fields["p90_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        max_ms=fields["max_us"] / 1000,
    )


def stats_script(workdir: Path) -> Path:
    """The plain script: wrk's own fixed request, plus the result line."""
    script = workdir / "stats.lua"
    script.write_text((LUA / "stats.lua").read_text())
    return script


def mixed_script(workdir: Path) -> Path:
    """The mixed-workload script (``lua/mixed.lua``) plus the result line."""
    script = workdir / "mixed.lua"
    script.write_text((LUA / "mixed.lua").read_text() + (LUA / "stats.lua").read_text())
    return script


@dataclass(frozen=True)
class PlanLine:
    """One kind of request of a mixed workload and how often it is drawn."""

    weight: int
    method: str
    path: str
    authorization: str
    body: str | None = None


def write_plan(path: Path, lines: Sequence[PlanLine]) -> Path:
    """Write a plan file for ``lua/mixed.lua``."""
    rows = []
    for line in lines:
        body = line.body if line.body is not None else "-"
        if any(c in value for value in (line.path, line.authorization, body) for c in "\t\n"):
            raise ValueError(f"tab or newline in plan line {line!r}")
        rows.append(f"{line.weight}\t{line.method}\t{line.path}\t{line.authorization}\t{body}")
    path.write_text("\n".join(rows) + "\n")
    return path


def run_wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    duration: float,
    headers: Mapping[str, str] | None = None,
    script_args: Sequence[str] = (),
    threads: int = 1,
    timeout: float = 60.0,
) -> WrkResult:
    """One wrk run against ``url``: ``connections`` open at once for ``duration`` seconds."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (make apt installs it)")
    argv = [
        binary,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s", str(script),
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + timeout + 30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr[-2000:]}")
    return parse_wrk(proc.stdout)


def run_wrk_parallel(
    urls: Sequence[str],
    script: Path,
    *,
    connections: int,
    duration: float,
    headers: Mapping[str, str] | None = None,
    script_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> list[WrkResult]:
    """One wrk per URL at the same time, ``connections`` split evenly among them."""
    share = max(1, connections // len(urls))

    async def all_runs() -> list[WrkResult]:
        return list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(
                        run_wrk,
                        url,
                        script,
                        connections=share,
                        duration=duration,
                        headers=headers,
                        script_args=script_args,
                        timeout=timeout,
                    )
                    for url in urls
                )
            )
        )

    return asyncio.run(all_runs())


def combine(results: Sequence[WrkResult]) -> WrkResult:
    """Several simultaneous runs as one: counts added, the longest duration, latencies
    weighted by requests (p50, p90) or the worst (p99, max): an approximation, said so in the
    report."""
    if len(results) == 1:
        return results[0]
    total = sum(r.requests for r in results) or 1
    return WrkResult(
        requests=sum(r.requests for r in results),
        seconds=max(r.seconds for r in results),
        bytes=sum(r.bytes for r in results),
        errors=sum(r.errors for r in results),
        bad_status=sum(r.bad_status for r in results),
        p50_ms=sum(r.p50_ms * r.requests for r in results) / total,
        p90_ms=sum(r.p90_ms * r.requests for r in results) / total,
        p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
    )


@dataclass(frozen=True)
class Burst:
    """The answers of a burst of identical requests."""

    count: int
    seconds: float
    statuses: Counter[int]
    #: X-Cache values ("" where absent)
    outcomes: Counter[str]
    body_sizes: frozenset[int]


async def _burst(urls: Sequence[str], path: str, headers: Mapping[str, str], count: int) -> Burst:
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    sizes: set[int] = set()
    targets = [URL(urls[i % len(urls)]) for i in range(count)]
    # Truly at once: every connection is opened, then every request is written, and only then is
    # any answer read. A client that reads while it still sends (aiohttp's) sends its last
    # requests seconds late once megabyte answers flow, and those find an entry that has already
    # expired: a refresh, not a stampede. No Accept header, like wrk's: the cache key includes it.
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())

    async def connect(url: URL) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(url.host, url.port, limit=1 << 20)

    async def read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            statuses[int(lines[0].split()[1])] += 1
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            outcomes[next((v for k, v in fields.items() if k.lower() == "x-cache"), "")] += 1
            size = 0
            while chunk := await reader.read(1 << 20):  # Connection: close: the body ends at EOF
                size += len(chunk)
            sizes.add(size)
        finally:
            writer.close()

    start = time.monotonic()
    async with asyncio.timeout(BURST_TIMEOUT):
        streams = await asyncio.gather(*(connect(url) for url in targets))
        for url, (_, writer) in zip(targets, streams, strict=True):
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n{extra}"
                "Connection: close\r\n\r\n".encode()
            )
        await asyncio.gather(*(writer.drain() for _, writer in streams))
        await asyncio.gather(*(read(reader, writer) for reader, writer in streams))
    seconds = time.monotonic() - start
    return Burst(count, seconds, statuses, outcomes, frozenset(sizes))


def burst(urls: Sequence[str], path: str, headers: Mapping[str, str], count: int) -> Burst:
    """``count`` identical GETs of ``path`` at once, round-robin over ``urls``."""
    return asyncio.run(_burst(urls, path, headers, count))
