"""The servers under test, started for a benchmark step and stopped with it.

Every server is a process of ours on free loopback ports, registered on an ``ExitStack`` so that
it is stopped by its PID whatever happens. :class:`Env` is what they all need: the suite, the
benchmark's own slurmrestd, the Redis server, credentials.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.bare import BareServer
from tests.bench.gateways import Gateways
from tests.bench.measure import UpstreamLog
from tests.bench.nginx import Nginx
from tests.lab.env import LabSuite
from tests.lab.private_restd import PrivateRestd
from tests.redis_server import RedisServer

__all__ = ["VERSION", "Env", "Target", "direct", "start_bare", "start_gateway", "start_nginx"]

#: The API version benchmarked (Slurm 26.05's newest).
VERSION = "v0.0.45"


@dataclass(frozen=True)
class Target:
    """Something to send requests to: its URLs (one per replica), credentials, processes."""

    name: str
    urls: tuple[str, ...]
    headers: Mapping[str, str]
    pids: Callable[[], list[int]]

    @property
    def url(self) -> str:
        """The first (or only) replica's base URL."""
        return self.urls[0]


@dataclass
class Env:
    """What every server of the benchmark needs."""

    suite: LabSuite
    workdir: Path
    restd: PrivateRestd
    redis: RedisServer
    tokens_file: Path
    #: gateway bearer tokens by user
    tokens: dict[str, str]
    #: a Slurm JWT for alice, for slurmrestd directly and through nginx
    slurm_jwt: str
    #: the requests ``restd`` logs: upstream calls
    upstream: UpstreamLog
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def gateway_headers(self, user: str = "alice") -> dict[str, str]:
        """Credentials for the gateway, as ``user``."""
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    @property
    def slurm_headers(self) -> dict[str, str]:
        """Credentials for slurmrestd (directly or through nginx), as alice."""
        return {"X-SLURM-USER-TOKEN": self.slurm_jwt}

    def next_dir(self, name: str) -> Path:
        """A new working folder for one server."""
        path = self.workdir / f"{next(self._serial):03d}-{name}"
        path.mkdir(parents=True)
        return path


def direct(env: Env) -> Target:
    """The benchmark's slurmrestd itself."""
    return Target("slurmrestd", (env.restd.url,), env.slurm_headers, lambda: [env.restd.pid])


def start_bare(env: Env, stack: ExitStack, bodies: Mapping[str, bytes]) -> Target:
    """A bare aiohttp server answering ``bodies``."""
    server = BareServer(env.next_dir("bare"), bodies)
    stack.callback(server.stop)
    return Target("bare aiohttp", (server.url,), env.slurm_headers, server.pids)


def start_nginx(
    env: Env, stack: ExitStack, *, workers: int, valid_seconds: int
) -> tuple[Target, Target]:
    """nginx with ``workers`` workers: (its caching proxy, its plain proxy)."""
    server = Nginx(
        env.next_dir(f"nginx-{workers}w"),
        upstream_port=env.restd.port,
        workers=workers,
        valid_seconds=valid_seconds,
    )
    stack.callback(server.stop)
    plural = "s" if workers > 1 else ""
    cached = Target(
        f"nginx proxy_cache ({workers} worker{plural})",
        (server.url,),
        env.slurm_headers,
        server.pids,
    )
    plain = Target(
        f"nginx proxy, no cache ({workers} worker{plural})",
        (server.plain_url,),
        env.slurm_headers,
        server.pids,
    )
    return cached, plain


def start_gateway(
    env: Env,
    stack: ExitStack,
    backend: str,
    *,
    replicas: int = 1,
    short: Mapping[str, float] | None = None,
    name: str | None = None,
) -> Target:
    """slurmgate with the ``backend`` cache (memory, redis, off); Redis replicas share a fresh
    key prefix, so every start is cold."""
    serial = next(env._serial)
    cache: dict[str, object] = {"backend": backend}
    if backend == "redis":
        cache |= {"redis_url": env.redis.url, "key_prefix": f"bench{serial}"}
    gateways = Gateways(
        env.next_dir(f"slurmgate-{backend}-{replicas}"),
        upstream_url=env.restd.url,
        jwt_key=env.suite.jwt_key,
        tokens_file=env.tokens_file,
        cache=cache,
        short=short,
        replicas=replicas,
    )
    stack.callback(gateways.stop)
    if name is None:
        name = f"slurmgate {backend}" + (f" x{replicas}" if replicas > 1 else "")
    pids: Callable[[], list[int]] = gateways.pids
    if backend == "redis":
        # Redis works for the gateway: its CPU and memory count too.
        redis_pid = env.redis.process.pid if env.redis.process else 0

        def pids() -> list[int]:
            return [*gateways.pids(), redis_pid]

    return Target(name, tuple(gateways.urls), env.gateway_headers(), pids)
