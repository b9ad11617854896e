"""What the lab is made of: suites, ports, seed data and the Slurm configuration files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = [
    "ACCOUNTS",
    "ADMIN_USER",
    "CHROOT_ENV",
    "JWT_KEY",
    "LAB_DIR",
    "NODES",
    "PARTITIONS",
    "RESTD_SOCKET",
    "RESTD_UID",
    "RESTD_USER",
    "SUITES",
    "USERS",
    "LabError",
    "Suite",
    "log",
    "slurm_conf",
    "slurmdbd_conf",
]

LAB_DIR = Path(os.environ.get("SLURMGATE_LAB_DIR", "/var/lib/slurmgate-lab"))
JWT_KEY = "/etc/slurm/jwt_hs256.key"
# A clean environment for everything run in a chroot: a SLURM_CONF exported on the host would leak
# in and stall every Slurm command for 60 s.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

# Seed data: accounts, users (uid, accounts; the first is the default), the slurmdb admin.
ACCOUNTS = ("physics", "chem")
USERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "alice": (2001, ("physics",)),
    "bob": (2002, ("chem",)),
    "carol": (2003, ("physics", "chem")),
    "dora": (2004, ("physics",)),
}
ADMIN_USER = "dora"
RESTD_USER = "slurmrestd"
RESTD_UID = 990
RESTD_SOCKET = "/run/slurmrestd/slurmrestd.socket"
NODES = ("n1", "n2")
PARTITIONS = {"debug": "Default=YES", "batch": "Default=NO"}


@dataclasses.dataclass(frozen=True)
class Suite:
    """One Debian release in its own chroot, with its own loopback ports."""

    name: str
    port_base: int
    # The API versions this release's slurmrestd serves; `up` fails if Debian's package differs.
    api_versions: tuple[str, ...]

    @property
    def home(self) -> Path:
        return LAB_DIR / self.name

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def ctld_port(self) -> int:
        return self.port_base + 17

    @property
    def dbd_port(self) -> int:
        return self.port_base + 19

    @property
    def rest_port(self) -> int:
        return self.port_base + 20

    def node_port(self, index: int) -> int:
        return self.port_base + 21 + index

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


SUITES = {
    s.name: s
    for s in (
        Suite("trixie", 16800, ("v0.0.40", "v0.0.41", "v0.0.42")),  # Slurm 24.11
        Suite("forky", 26800, ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")),  # Slurm 26.05
    )
}


def log(suite: Suite | None, message: str) -> None:
    prefix = f"[lab {suite.name}]" if suite else "[lab]"
    print(f"{prefix} {message}", flush=True)


class LabError(RuntimeError):
    """The lab could not be brought to the requested state; the message says why."""


def slurm_conf(suite: Suite) -> str:
    nodes = "\n".join(
        f"NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={suite.node_port(i)} "
        "CPUs=4 RealMemory=4000 State=UNKNOWN"
        for i, n in enumerate(NODES)
    )
    partitions = "\n".join(
        f"PartitionName={p} Nodes={','.join(NODES)} {opts} MaxTime=INFINITE State=UP"
        for p, opts in PARTITIONS.items()
    )
    return f"""# Written by slurmgate's tests/lab/lab.py; changes are overwritten.
ClusterName={suite.name}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={suite.ctld_port}
SlurmdPort={suite.node_port(0)}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={JWT_KEY}
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd/%n
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SlurmdParameters=config_overrides
# No cgroups in a chroot on this machine.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MaxJobCount=20000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={suite.dbd_port}
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
{nodes}
{partitions}
"""


def slurmdbd_conf(suite: Suite) -> str:
    return f"""# Written by slurmgate's tests/lab/lab.py; changes are overwritten.
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={JWT_KEY}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={suite.dbd_port}
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm-lab
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
"""
