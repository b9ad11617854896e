"""What a test needs to use the lab: its suites, tokens, and Slurm's own tools in the chroots."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

from .rest import mint_token
from .suites import CHROOT_ENV, LAB_DIR, SUITES

__all__ = ["Lab", "LabSuite", "load_lab", "purge_throwaway_accounts", "start_lab", "suite_versions"]

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class LabSuite:
    """One running suite as ``lab.json`` describes it."""

    name: str
    cluster: str
    url: str
    versions: tuple[str, ...]
    slurm_release: str
    root: Path
    jwt_key: Path
    #: slurmrestd's unix socket, as seen from the host
    unix_socket: Path
    #: runs slurmrestd in inetd mode (one process per connection, HTTP on stdin/stdout)
    inetd_command: tuple[str, ...]

    def token(self, user: str = "slurm", lifespan: int = 600) -> str:
        """A JWT for ``user`` signed with the suite's Slurm key."""
        return mint_token(self.jwt_key.read_bytes(), user, lifespan)

    def run(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command (squeue, sacctmgr, ...) in the suite's chroot; raise if it fails."""
        spec = [f"--userspec={user}:{user}"] if user else []
        return subprocess.run(
            ["chroot", *spec, str(self.root), *args],
            capture_output=True,
            text=True,
            env=CHROOT_ENV,
            timeout=120,
            check=True,
        )


@dataclasses.dataclass(frozen=True)
class Lab:
    """The running lab: suites by name, and the seed data."""

    suites: dict[str, LabSuite]
    accounts: tuple[str, ...]
    users: dict[str, tuple[str, ...]]
    admin_user: str
    slurm_user: str


def suite_versions() -> list[tuple[str, str]]:
    """(suite, API version) for every version each suite serves: known before the lab is up."""
    return [(name, v) for name, suite in SUITES.items() for v in suite.api_versions]


def start_lab() -> None:
    """Bring the lab up (idempotent); raise with the lab's output when it cannot start."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.lab", "up"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"the lab did not start (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


#: Throwaway accounts the authorization corpus makes per case (tests/server/authorize_corpus.py)
#: and the sreport test makes per run (tests/server/usage/test_sreport_lab.py).
_THROWAWAY = re.compile(r"sgt[0-9a-f]{8}")


def purge_throwaway_accounts(suite: LabSuite) -> list[str]:
    """Delete the corpus's throwaway accounts (and their associations) that an interrupted run
    left behind, so that tests reading associations see the seed data; the names deleted."""
    listed = suite.run("sacctmgr", "-nP", "show", "account", "format=account").stdout.split()
    stale = [name for name in listed if _THROWAWAY.fullmatch(name)]
    if stale:
        suite.run("sacctmgr", "-i", "delete", "account", ",".join(stale))
    return stale


def load_lab() -> Lab:
    """Read ``lab.json`` as ``up`` wrote it."""
    data = json.loads((LAB_DIR / "lab.json").read_text())
    suites = {
        name: LabSuite(
            name=name,
            cluster=s["cluster"],
            url=s["url"],
            versions=tuple(s["versions"]),
            slurm_release=s["slurm_release"],
            root=Path(s["root"]),
            jwt_key=Path(s["jwt_key"]),
            unix_socket=Path(s["unix_socket"]),
            inetd_command=tuple(s["inetd_command"]),
        )
        for name, s in data["suites"].items()
    }
    users = {u: tuple(info["accounts"]) for u, info in data["users"].items()}
    return Lab(
        suites=suites,
        accounts=tuple(data["accounts"]),
        users=users,
        admin_user=data["admin_user"],
        slurm_user=data["slurm_user"],
    )
