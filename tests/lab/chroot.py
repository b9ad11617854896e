"""The chroots: debootstrap, users, configuration files and mounts."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .state import save_state
from .suites import (
    CHROOT_ENV,
    JWT_KEY,
    NODES,
    RESTD_SOCKET,
    RESTD_UID,
    RESTD_USER,
    SUITES,
    USERS,
    LabError,
    Suite,
    log,
    slurm_conf,
    slurmdbd_conf,
)

__all__ = [
    "chroot_ids",
    "configure",
    "ensure_chroot",
    "ensure_mounts",
    "in_chroot",
    "mounted",
    "mounts_below",
    "release_mounts",
    "run",
    "slurm_release",
]

MIRROR = os.environ.get("SLURMGATE_LAB_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "ca-certificates",
    "mariadb-server",
    "munge",
    "procps",
    "slurm-client",
    "slurm-wlm-jwt-plugin",
    "slurm-wlm-mysql-plugin",
    "slurmctld",
    "slurmd",
    "slurmdbd",
    "slurmrestd",
)
READY_MARK = ".slurmgate-lab-ready"


def run(
    args: Sequence[str], *, check: bool = True, timeout: float = 600, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=CHROOT_ENV, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"{' '.join(args)} exited {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    if not quiet and proc.returncode != 0:
        log(None, f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc


def in_chroot(
    suite: Suite,
    args: Sequence[str],
    *,
    user: str | None = None,
    check: bool = True,
    quiet: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the suite's chroot, optionally as ``user``, with a clean environment."""
    spec = [f"--userspec={user}:{user}"] if user else []
    return run(["chroot", *spec, str(suite.root), *args], check=check, timeout=120, quiet=quiet)


def ensure_chroot(suite: Suite) -> None:
    if (suite.root / READY_MARK).exists():
        return
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed (apt-get install debootstrap)")
    partial = suite.home / "root.partial"
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(partial)
    suite.home.mkdir(parents=True, exist_ok=True)
    log(suite, f"debootstrap {suite.name} into {partial} (a few minutes)")
    started = time.monotonic()
    # Newer suites have no script of their own in an older debootstrap; sid's works for all.
    script = Path("/usr/share/debootstrap/scripts") / suite.name
    if not script.exists():
        script = Path("/usr/share/debootstrap/scripts/sid")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            suite.name,
            str(partial),
            MIRROR,
            str(script),
        ],
        timeout=1500,
    )
    # Archives of testing suites may carry expired Release files.
    apt_conf = partial / "etc/apt/apt.conf.d/99slurmgate-lab"
    apt_conf.write_text('Acquire::Check-Valid-Until "false";\n')
    if suite.root.exists():
        shutil.rmtree(suite.root)
    partial.rename(suite.root)
    (suite.root / READY_MARK).write_text(f"{time.time():.0f}\n")
    log(suite, f"chroot ready in {time.monotonic() - started:.0f} s")


def slurm_release(suite: Suite) -> str:
    proc = in_chroot(suite, ["dpkg-query", "-W", "-f=${Version}", "slurmctld"])
    return proc.stdout.strip().split("-")[0]


def ensure_users(suite: Suite) -> None:
    passwd = (suite.root / "etc/passwd").read_text()
    wanted = [(RESTD_USER, RESTD_UID, True)] + [(n, u, False) for n, (u, _) in USERS.items()]
    for name, uid, system in wanted:
        if f"\n{name}:" in f"\n{passwd}":
            continue
        args = ["useradd", "--uid", str(uid), "--user-group", "--shell", "/bin/sh"]
        args += ["--system", "--no-create-home"] if system else ["--create-home"]
        in_chroot(suite, [*args, name])


def write_if_changed(path: Path, text: str, *, mode: int = 0o644, owner: str | None = None) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    path.chmod(mode)
    if owner:
        uid, gid = chroot_ids(suite_of(path), owner)
        os.chown(path, uid, gid)


def suite_of(path: Path) -> Suite:
    for suite in SUITES.values():
        if path.is_relative_to(suite.root):
            return suite
    raise LabError(f"{path} is in no suite's chroot")


def chroot_ids(suite: Suite, user: str) -> tuple[int, int]:
    for line in (suite.root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LabError(f"no user {user} in {suite.name}'s chroot")


def configure(suite: Suite) -> None:
    ensure_users(suite)
    root = suite.root
    slurm_uid, slurm_gid = chroot_ids(suite, "slurm")
    for rel in (
        "var/lib/slurm/slurmctld",
        "var/log/slurm",
        "run/slurm",
        *(f"var/lib/slurm/slurmd/{n}" for n in NODES),
    ):
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, slurm_uid, slurm_gid)
    munge_uid, munge_gid = chroot_ids(suite, "munge")
    for rel in ("run/munge", "var/log/munge", "var/lib/munge"):
        (root / rel).mkdir(parents=True, exist_ok=True)
        os.chown(root / rel, munge_uid, munge_gid)
    mysql_uid, mysql_gid = chroot_ids(suite, "mysql")
    restd_uid, restd_gid = chroot_ids(suite, RESTD_USER)
    (root / RESTD_SOCKET.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    os.chown((root / RESTD_SOCKET.lstrip("/")).parent, restd_uid, restd_gid)
    (root / "run/mysqld").mkdir(parents=True, exist_ok=True)
    os.chown(root / "run/mysqld", mysql_uid, mysql_gid)
    key = root / JWT_KEY.lstrip("/")
    if not key.exists():
        key.write_bytes(secrets.token_bytes(64))
    key.chmod(0o600)
    os.chown(key, slurm_uid, slurm_gid)
    munge_key = root / "etc/munge/munge.key"
    if not munge_key.exists():
        in_chroot(suite, ["mungekey", "--create", "--keyfile=/etc/munge/munge.key"])
    os.chown(munge_key, munge_uid, munge_gid)
    munge_key.chmod(0o600)
    # munged resolves the host name through the chroot's own files.
    shutil.copyfile("/etc/hosts", root / "etc/hosts")
    write_if_changed(root / "etc/slurm/slurm.conf", slurm_conf(suite))
    write_if_changed(root / "etc/slurm/cgroup.conf", "CgroupPlugin=disabled\n")
    write_if_changed(
        root / "etc/slurm/slurmdbd.conf", slurmdbd_conf(suite), mode=0o600, owner="slurm"
    )


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def mounts_below(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [m for m in (line.split()[4] for line in f) if m.startswith(prefix)]


def ensure_mounts(suite: Suite, state: dict[str, Any]) -> None:
    for rel, args in (
        ("proc", ["-t", "proc", "proc"]),
        ("sys", ["-t", "sysfs", "sysfs"]),
        ("dev", ["--bind", "/dev"]),
        ("dev/pts", ["--bind", "/dev/pts"]),
    ):
        target = suite.root / rel
        if mounted(target):
            continue
        run(["mount", *args, str(target)])
        state["mounts"].append(str(target))
        save_state(suite, state)


def release_mounts(suite: Suite, state: dict[str, Any]) -> None:
    for target in reversed(state.get("mounts", [])):
        if mounted(Path(target)):
            proc = run(["umount", target], check=False)
            if proc.returncode != 0:
                run(["umount", "--lazy", target], check=False)
    state["mounts"] = []
    save_state(suite, state)
