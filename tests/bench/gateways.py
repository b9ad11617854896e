"""slurmgate as the benchmark runs it: ``slurmgate serve --config`` subprocesses, one per replica.

Each replica gets its own free loopback port and the same configuration otherwise: upstream is the
benchmark's slurmrestd over HTTP, the SlurmUser token is minted from the suite's key, and the
cache is ``memory``, ``redis`` (at ``redis_url``, shared by the replicas) or ``off``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.bench.procs import Proc, free_port
from tests.server.gateway import create_token

__all__ = ["Gateways", "render_config", "user_tokens"]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML for {value!r}")


def render_config(
    *,
    port: int,
    upstream_url: str,
    jwt_key: Path,
    tokens_file: Path,
    cache: Mapping[str, object],
    short: Mapping[str, float] | None = None,
) -> str:
    """A whole slurmgate.toml (docs/configuration.md) for one replica."""
    lines = [
        'log_level = "warning"',
        "[listen]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "[upstream]",
        f"url = {_toml_value(upstream_url)}",
        "[slurm_user_token]",
        f"jwt_key = {_toml_value(str(jwt_key))}",
        "[auth]",
        f"tokens_file = {_toml_value(str(tokens_file))}",
        "[cache]",
        *(f"{key} = {_toml_value(value)}" for key, value in cache.items()),
    ]
    if short:
        lines += ["[cache.short]", *(f"{k} = {_toml_value(v)}" for k, v in short.items())]
    return "\n".join(lines) + "\n"


def user_tokens(tokens_file: Path, users: Sequence[str]) -> dict[str, str]:
    """A gateway token (read and manage jobs, any account) for each of ``users``."""
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    return {user: create_token(tokens_file, user) for user in users}


class Gateways:
    """``replicas`` slurmgate processes sharing one configuration but for their ports."""

    def __init__(
        self,
        workdir: Path,
        *,
        upstream_url: str,
        jwt_key: Path,
        tokens_file: Path,
        cache: Mapping[str, object],
        short: Mapping[str, float] | None = None,
        replicas: int = 1,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(replicas)]
        self.procs: list[Proc] = []
        binary = Path(sys.executable).parent / "slurmgate"
        try:
            for index, port in enumerate(self.ports):
                config = workdir / f"slurmgate-{index}.toml"
                config.write_text(
                    render_config(
                        port=port,
                        upstream_url=upstream_url,
                        jwt_key=jwt_key,
                        tokens_file=tokens_file,
                        cache=cache,
                        short=short,
                    )
                )
                self.procs.append(
                    Proc([str(binary), "serve", "--config", str(config)], workdir / f"{index}.log")
                )
            for proc, port in zip(self.procs, self.ports, strict=True):
                proc.wait_listening(port)
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> list[str]:
        """Each replica's base URL."""
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        """The first replica's base URL."""
        return self.urls[0]

    def pids(self) -> list[int]:
        """Every replica's PID."""
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        """Stop every replica by its PID."""
        for proc in self.procs:
            proc.stop()
