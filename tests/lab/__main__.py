"""The Slurm lab: Debian's own Slurm in debootstrap chroots on loopback, for slurmgate's tests.

Usage (as root, from the repository): ``python3 -m tests.lab up|down|status|show|chroot|exec|destroy
[suite ...]``; ``make lab`` and ``make lab-down`` call it.

Each suite (Debian release) gets a chroot under ``$SLURMGATE_LAB_DIR/<suite>/root`` running
munged, MariaDB, slurmdbd, slurmctld, two slurmd nodes and slurmrestd (JWT) on its own ports.
``up`` is idempotent: it reuses an existing chroot and daemons that are still running. The PIDs it
starts and the mounts it makes are recorded in ``<suite>/state.json``; ``down`` stops and unmounts
only those. ``up`` writes ``$SLURMGATE_LAB_DIR/lab.json`` and ``lab.env`` for tests and people.

Standard library only, so it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .chroot import ensure_chroot, mounts_below, slurm_release
from .daemons import all_running, down, status, up
from .rest import mint_token, served_versions
from .suites import (
    ACCOUNTS,
    ADMIN_USER,
    CHROOT_ENV,
    JWT_KEY,
    LAB_DIR,
    NODES,
    PARTITIONS,
    SUITES,
    USERS,
    LabError,
    Suite,
    log,
)

__all__ = ["main"]


def write_env(info: list[dict[str, Any]]) -> None:
    """Write lab.json (for tests) and lab.env (for shells) describing the suites that are up."""
    suites: dict[str, dict[str, Any]] = {s["name"]: s for s in info}
    previous = LAB_DIR / "lab.json"
    if previous.exists():
        # Keep suites brought up by an earlier call that are still running.
        for name, suite in json.loads(previous.read_text()).get("suites", {}).items():
            if name in SUITES and name not in suites and all_running(SUITES[name]):
                suites[name] = suite
    data = {
        "lab_dir": str(LAB_DIR),
        "suites": suites,
        "accounts": list(ACCOUNTS),
        "users": {
            u: {"uid": uid, "accounts": list(a), "default_account": a[0]}
            for u, (uid, a) in USERS.items()
        },
        "admin_user": ADMIN_USER,
        "slurm_user": "slurm",
        "nodes": list(NODES),
        "partitions": list(PARTITIONS),
    }
    (LAB_DIR / "lab.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    lines = [f"SLURMGATE_LAB_DIR={LAB_DIR}", f'LAB_SUITES="{" ".join(suites)}"']
    for name, suite in sorted(suites.items()):
        prefix = f"LAB_{name.upper()}"
        lines += [
            f"{prefix}_URL={suite['url']}",
            f'{prefix}_VERSIONS="{" ".join(suite["versions"])}"',
            f"{prefix}_SLURM_RELEASE={suite['slurm_release']}",
            f"{prefix}_JWT_KEY={suite['jwt_key']}",
            f"{prefix}_ROOT={suite['root']}",
        ]
    (LAB_DIR / "lab.env").write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def lock() -> Iterator[None]:
    """One lab command at a time (make test and make demo may both call up)."""
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    with open(LAB_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def cmd_up(chosen: list[Suite]) -> None:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(chosen)) as pool:
        info = list(pool.map(up, chosen))
    write_env(info)
    log(None, f"all up in {time.monotonic() - started:.0f} s; env in {LAB_DIR}/lab.env")


def cmd_chroot(chosen: list[Suite]) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(chosen)) as pool:
        list(pool.map(ensure_chroot, chosen))
    for suite in chosen:
        print(suite.root)


def cmd_down(chosen: list[Suite]) -> None:
    for suite in chosen:
        down(suite)


def cmd_status(chosen: list[Suite]) -> None:
    for suite in chosen:
        print("\n".join(status(suite)))


def cmd_destroy(chosen: list[Suite]) -> None:
    for suite in chosen:
        down(suite)
        # Never delete through a mount: a bind-mounted /dev would be emptied with the chroot.
        if mounts_below(suite.home):
            raise LabError(f"{suite.name}: mounts remain below {suite.home}; not removing it")
        shutil.rmtree(suite.home, ignore_errors=True)
        log(suite, f"removed {suite.home}")


def cmd_show(chosen: list[Suite]) -> None:
    """Print how to reach each running suite, with a curl line and a fresh one-hour token."""
    for suite in chosen:
        if not all_running(suite):
            print(f"{suite.name}: not running (make lab)")
            continue
        token = mint_token((suite.root / JWT_KEY.lstrip("/")).read_bytes(), "alice", 3600)
        version = served_versions(suite)[-1]
        print(
            f"{suite.name}: Slurm {slurm_release(suite)} at {suite.url}, "
            f"API {' '.join(served_versions(suite))}\n"
            f"  curl -s -H 'X-SLURM-USER-TOKEN: {token}' {suite.url}/slurm/{version}/ping/\n"
            f"  python3 -m tests.lab exec {suite.name} squeue   # Slurm's own tools in the chroot\n"
        )


COMMANDS: dict[str, Callable[[list[Suite]], None]] = {
    "show": cmd_show,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "chroot": cmd_chroot,
    "destroy": cmd_destroy,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one lab command; 0 on success, 1 when the lab failed, 2 for a usage error."""
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("command", choices=(*COMMANDS, "exec"))
    parser.add_argument("suites", nargs="*", help="suites (default: all); for exec: SUITE CMD...")
    args, rest = parser.parse_known_args(argv)
    if os.geteuid() != 0:
        print("lab: must run as root (debootstrap, chroot, mount)", file=sys.stderr)
        return 2
    unknown = [s for s in args.suites[: 1 if args.command == "exec" else None] if s not in SUITES]
    if unknown or (args.command == "exec" and not args.suites):
        print(f"lab: name a suite of: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    if args.command == "exec":
        suite = SUITES[args.suites[0]]
        cmd = [*args.suites[1:], *rest]
        return subprocess.call(["chroot", str(suite.root), *cmd], env=CHROOT_ENV)
    chosen = [SUITES[s] for s in (args.suites or SUITES)]
    with lock():
        try:
            COMMANDS[args.command](chosen)
        except LabError as error:
            print(f"lab: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
