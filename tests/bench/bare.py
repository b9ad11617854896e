"""A bare aiohttp server answering fixed paths with fixed bytes: the ceiling for aiohttp servers.

Run as ``python -m tests.bench.bare --port N PATH=FILE...``; :class:`BareServer` starts it as a
subprocess. No authentication, no routing table, no cache: one dict lookup and the bytes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from tests.bench.procs import Proc, free_port

__all__ = ["BareServer", "build_app", "main"]


def build_app(bodies: Mapping[str, bytes]) -> web.Application:
    """An app answering each path of ``bodies`` with 200, ``application/json`` and its bytes."""

    async def handler(request: web.Request) -> web.Response:
        body = bodies.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve ``PATH=FILE`` pairs on ``127.0.0.1:--port`` until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bare")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("routes", nargs="+", metavar="PATH=FILE")
    args = parser.parse_args(argv)
    bodies = {}
    for route in args.routes:
        path, _, file = route.partition("=")
        bodies[path] = Path(file).read_bytes()
    web.run_app(build_app(bodies), host="127.0.0.1", port=args.port, print=None, access_log=None)


class BareServer:
    """``python -m tests.bench.bare`` as a subprocess of ours on a free port."""

    def __init__(self, workdir: Path, bodies: Mapping[str, bytes]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        routes = []
        for index, (path, body) in enumerate(sorted(bodies.items())):
            file = workdir / f"body-{index}.json"
            file.write_bytes(body)
            routes.append(f"{path}={file}")
        self.port = free_port()
        self.proc = Proc(
            [sys.executable, "-m", "tests.bench.bare", "--port", str(self.port), *routes],
            workdir / "bare.log",
        )
        self.proc.wait_listening(self.port)

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The one process serving."""
        return [self.proc.pid]

    def stop(self) -> None:
        """Stop it by its PID."""
        self.proc.stop()


if __name__ == "__main__":
    main()
