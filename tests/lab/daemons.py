"""The daemons of a suite: start in order and wait until each is ready; stop only our own."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .chroot import (
    configure,
    ensure_chroot,
    ensure_mounts,
    in_chroot,
    release_mounts,
    slurm_release,
)
from .rest import rest_get, served_versions
from .state import load_state, pid_is_ours, save_state
from .suites import (
    ACCOUNTS,
    ADMIN_USER,
    CHROOT_ENV,
    JWT_KEY,
    NODES,
    RESTD_SOCKET,
    RESTD_USER,
    USERS,
    LabError,
    Suite,
    log,
)

__all__ = ["Daemon", "all_running", "daemons", "down", "status", "up"]


@dataclasses.dataclass(frozen=True)
class Daemon:
    """A daemon in a chroot, run in the foreground so that its PID is the one we record."""

    key: str
    program: str
    args: tuple[str, ...]
    user: str | None = None
    env: tuple[tuple[str, str], ...] = ()


def daemons(suite: Suite) -> list[Daemon]:
    return [
        Daemon("munged", "munged", ("-F",), user="munge"),
        Daemon(
            "mariadbd",
            "mariadbd",
            (
                "--user=mysql",
                "--skip-networking",
                "--socket=/run/mysqld/mysqld.sock",
                "--pid-file=/run/mysqld/mysqld.pid",
                "--innodb-buffer-pool-size=64M",
                # Slurm does not support MariaDB's snapshot isolation.
                "--innodb-snapshot-isolation=OFF",
                "--skip-log-bin",
                "--log-error=/var/log/mysql-lab.err",
            ),
        ),
        Daemon("slurmdbd", "slurmdbd", ("-D",)),
        Daemon("slurmctld", "slurmctld", ("-D", "-i")),
        *(Daemon(f"slurmd-{n}", "slurmd", ("-D", "-N", n)) for n in NODES),
        Daemon(
            "slurmrestd",
            "slurmrestd",
            ("-a", "rest_auth/jwt", f"127.0.0.1:{suite.rest_port}", f"unix:{RESTD_SOCKET}"),
            user=RESTD_USER,
            # Without SLURM_JWT=daemon slurmrestd rejects every request ("thread config token").
            env=(("SLURM_JWT", "daemon"),),
        ),
    ]


def start_daemon(suite: Suite, daemon: Daemon, state: dict[str, Any]) -> bool:
    """Start ``daemon`` unless a recorded PID of ours still runs it; True if it was started."""
    pid = state["pids"].get(daemon.key)
    if pid and pid_is_ours(suite, pid, daemon.program):
        return False
    logs = suite.home / "logs"
    logs.mkdir(exist_ok=True)
    spec = [f"--userspec={daemon.user}:{daemon.user}"] if daemon.user else []
    env = dict(CHROOT_ENV)
    env.update(daemon.env)
    if daemon.user:
        env["HOME"] = "/"
    with open(logs / f"{daemon.key}.log", "ab") as out:
        proc = subprocess.Popen(
            ["chroot", *spec, str(suite.root), f"/usr/sbin/{daemon.program}", *daemon.args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    state["pids"][daemon.key] = proc.pid
    save_state(suite, state)
    log(suite, f"started {daemon.key} (pid {proc.pid})")
    return True


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, suite: Suite) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, subprocess.SubprocessError, LabError):
            pass
        if time.monotonic() > deadline:
            raise LabError(
                f"{suite.name}: {what} not ready after {timeout:.0f} s; see {suite.home}/logs"
            )
        time.sleep(0.3)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_alive(suite: Suite, daemon: Daemon, state: dict[str, Any]) -> None:
    if not pid_is_ours(suite, state["pids"][daemon.key], daemon.program):
        tail = (suite.home / "logs" / f"{daemon.key}.log").read_text(errors="replace")[-1500:]
        raise LabError(f"{suite.name}: {daemon.key} exited during start:\n{tail}")


def mariadb_datadir(suite: Suite) -> str:
    """The data directory mariadbd uses when started without ``--datadir``: the package's default
    (/var/lib/mysql in trixie; /var/lib/mariadb from MariaDB 1:11.8.6-5 on, in forky)."""
    out = in_chroot(suite, ["mariadbd", "--verbose", "--help"], quiet=True).stdout
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        if name == "datadir" and value.strip():
            return value.strip().rstrip("/")
    raise LabError(f"{suite.name}: mariadbd --verbose --help names no datadir")


def ensure_database(suite: Suite) -> None:
    datadir = mariadb_datadir(suite)
    if not (suite.root / datadir.lstrip("/") / "mysql").exists():
        log(suite, f"initializing MariaDB's data directory {datadir}")
        in_chroot(
            suite,
            [
                "mariadb-install-db",
                "--user=mysql",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
        )


def seed_database(suite: Suite) -> None:
    # The database must exist before slurmdbd's first start: libmariadb 3.4.10 otherwise fails
    # with "Number of columns in result ... exceeds maximum".
    sql = (
        "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
        "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-lab';"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    )
    in_chroot(suite, ["mariadb", "--socket=/run/mysqld/mysqld.sock", "-e", sql])


def sacctmgr(suite: Suite, *args: str) -> str:
    proc = in_chroot(suite, ["sacctmgr", "-i", "-n", "-P", *args], check=False, quiet=True)
    if proc.returncode != 0:
        raise LabError(f"{suite.name}: sacctmgr {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def seed_accounts(suite: Suite) -> None:
    """Add the cluster, accounts, users and the administrator that are not there yet."""
    if suite.name not in sacctmgr(suite, "show", "cluster", "format=cluster").split():
        sacctmgr(suite, "add", "cluster", suite.name)
    existing = set(sacctmgr(suite, "show", "account", "format=account").split())
    for account in ACCOUNTS:
        if account not in existing:
            sacctmgr(
                suite,
                "add",
                "account",
                account,
                f"cluster={suite.name}",
                f"description={account}",
                f"organization={account}",
            )
    out = sacctmgr(suite, "show", "assoc", f"cluster={suite.name}", "format=account,user")
    assocs = {tuple(line.split("|")) for line in out.splitlines()}
    # slurmrestd acts as SlurmUser for impersonation; give it an association like a site would.
    for user, accounts in [*((u, a) for u, (_, a) in USERS.items()), ("slurm", ("root",))]:
        missing = [a for a in accounts if (a, user) not in assocs]
        if missing:
            sacctmgr(
                suite,
                "add",
                "user",
                user,
                f"account={','.join(missing)}",
                f"defaultaccount={accounts[0]}",
                f"cluster={suite.name}",
            )
    if "Administrator" not in sacctmgr(suite, "show", "user", ADMIN_USER, "format=adminlevel"):
        sacctmgr(suite, "modify", "user", ADMIN_USER, "set", "adminlevel=Administrator")


def nodes_idle(suite: Suite) -> bool:
    proc = in_chroot(suite, ["sinfo", "-h", "-N", "-o", "%N %t"], check=False, quiet=True)
    states = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
    return all(states.get(n, "").startswith(("idle", "mix", "alloc")) for n in NODES)


def up(suite: Suite) -> dict[str, Any]:
    started = time.monotonic()
    ensure_chroot(suite)
    configure(suite)
    state = load_state(suite)
    ensure_mounts(suite, state)
    ensure_database(suite)
    by_key = {d.key: d for d in daemons(suite)}

    socket_path = suite.root / "run/munge/munge.socket.2"
    if not pid_is_ours(suite, state["pids"].get("munged", 0), "munged"):
        # A socket left by a munged that was killed would pass for a ready one.
        for stale in socket_path.parent.glob("munge.socket.2*"):
            stale.unlink()
    start_daemon(suite, by_key["munged"], state)
    wait_for(
        "munged",
        socket_path.exists,
        timeout=20,
        suite=suite,
    )
    assert_alive(suite, by_key["munged"], state)

    start_daemon(suite, by_key["mariadbd"], state)
    wait_for(
        "MariaDB",
        lambda: (
            in_chroot(
                suite,
                ["mariadb-admin", "--socket=/run/mysqld/mysqld.sock", "ping"],
                check=False,
                quiet=True,
            ).returncode
            == 0
        ),
        timeout=60,
        suite=suite,
    )
    seed_database(suite)

    start_daemon(suite, by_key["slurmdbd"], state)
    wait_for("slurmdbd", lambda: port_open(suite.dbd_port), timeout=90, suite=suite)
    assert_alive(suite, by_key["slurmdbd"], state)
    seed_accounts(suite)

    start_daemon(suite, by_key["slurmctld"], state)
    wait_for(
        "slurmctld",
        lambda: in_chroot(suite, ["scontrol", "ping"], check=False, quiet=True).returncode == 0,
        timeout=60,
        suite=suite,
    )
    for node in NODES:
        start_daemon(suite, by_key[f"slurmd-{node}"], state)
    wait_for("slurmd nodes", lambda: nodes_idle(suite), timeout=90, suite=suite)

    start_daemon(suite, by_key["slurmrestd"], state)
    wait_for(
        "slurmrestd", lambda: rest_get(suite, "/openapi/v3")[0] == 200, timeout=60, suite=suite
    )
    versions = served_versions(suite)
    if tuple(versions) != suite.api_versions:
        raise LabError(
            f"{suite.name}: slurmrestd serves {versions}, the lab expects {suite.api_versions}"
        )
    log(suite, f"up in {time.monotonic() - started:.0f} s: {suite.url} serves {' '.join(versions)}")
    return {
        "name": suite.name,
        "cluster": suite.name,
        "url": suite.url,
        "rest_port": suite.rest_port,
        "versions": versions,
        "slurm_release": slurm_release(suite),
        "root": str(suite.root),
        "jwt_key": str(suite.root / JWT_KEY.lstrip("/")),
        "munge_socket": str(suite.root / "run/munge/munge.socket.2"),
        "logs": str(suite.home / "logs"),
        "unix_socket": str(suite.root / RESTD_SOCKET.lstrip("/")),
        # slurmrestd in inetd mode (no listen address): one process per connection on stdin/stdout.
        "inetd_command": [
            "chroot",
            f"--userspec={RESTD_USER}:{RESTD_USER}",
            str(suite.root),
            "/usr/bin/env",
            "SLURM_JWT=daemon",
            "/usr/sbin/slurmrestd",
            "-a",
            "rest_auth/jwt",
        ],
    }


def down(suite: Suite) -> None:
    state = load_state(suite)
    by_key = {d.key: d for d in daemons(suite)}
    for daemon in reversed(list(by_key.values())):
        pid = state["pids"].get(daemon.key)
        if pid and pid_is_ours(suite, pid, daemon.program):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while pid_is_ours(suite, pid, daemon.program) and time.monotonic() < deadline:
                reap(pid)
                time.sleep(0.2)
            if pid_is_ours(suite, pid, daemon.program):
                os.kill(pid, signal.SIGKILL)
            log(suite, f"stopped {daemon.key} (pid {pid})")
        state["pids"].pop(daemon.key, None)
        save_state(suite, state)
    stop_descendants(suite)
    release_mounts(suite, state)


def chroot_pids(suite: Suite) -> list[int]:
    """PIDs of processes whose root is this suite's chroot."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "root") == str(suite.root):
                    pids.append(int(entry.name))
    return pids


def stop_descendants(suite: Suite) -> None:
    """Stop what our daemons left behind in the chroot (slurmstepd and job steps outlive slurmd).

    Only this script starts processes in the lab's chroots, so each of these descends from a
    daemon it started; they are found by their root directory and signalled by PID.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = chroot_pids(suite)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while chroot_pids(suite) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pids:
            log(suite, f"stopped {len(pids)} leftover process(es) with {sig.name}")


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def all_running(suite: Suite) -> bool:
    """True if every daemon of the suite runs under a PID this lab recorded."""
    state = load_state(suite)
    return all(pid_is_ours(suite, state["pids"].get(d.key, 0), d.program) for d in daemons(suite))


def status(suite: Suite) -> list[str]:
    state = load_state(suite)
    lines = []
    for daemon in daemons(suite):
        pid = state["pids"].get(daemon.key)
        alive = bool(pid) and pid_is_ours(suite, pid, daemon.program)
        lines.append(
            f"{suite.name:7} {daemon.key:12} {'running' if alive else 'stopped'} {pid or ''}"
        )
    return lines
