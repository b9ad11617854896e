"""The lab itself: what every other integration test relies on."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.lab.daemons import mariadb_datadir
from tests.lab.env import Lab, LabSuite, purge_throwaway_accounts, start_lab, throwaway_account
from tests.lab.suites import LAB_DIR, SUITES


def get(suite: LabSuite, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(suite.url + path, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suite_serves_its_api_versions(lab: Lab, name: str) -> None:
    suite = lab.suites[name]
    assert suite.versions == SUITES[name].api_versions
    expected_release = {"trixie": "24.11.", "forky": "26.05."}[name]
    assert suite.slurm_release.startswith(expected_release)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_accounts_and_users_are_seeded(lab: Lab, name: str) -> None:
    suite = lab.suites[name]
    out = suite.run(
        "sacctmgr", "-n", "-P", "show", "assoc", f"cluster={suite.cluster}", "format=account,user"
    ).stdout
    associations = {tuple(line.split("|")) for line in out.splitlines()}
    for user, accounts in lab.users.items():
        for account in accounts:
            assert (account, user) in associations
    # At least one user is in two accounts, and there is a slurmdb administrator.
    assert any(len(accounts) > 1 for accounts in lab.users.values())
    admin = suite.run("sacctmgr", "-n", "-P", "show", "user", lab.admin_user, "format=adminlevel")
    assert admin.stdout.strip() == "Administrator"


@pytest.mark.parametrize("name", sorted(SUITES))
def test_slurmrestd_takes_jwt_and_impersonation(lab: Lab, name: str) -> None:
    suite = lab.suites[name]
    version = suite.versions[-1]
    status, _ = get(suite, f"/slurm/{version}/ping/", {})
    assert status == 401
    headers = {"X-SLURM-USER-TOKEN": suite.token(lab.slurm_user), "X-SLURM-USER-NAME": "bob"}
    status, body = get(suite, f"/slurm/{version}/ping/", headers)
    assert status == 200, body
    assert json.loads(body)["meta"]["slurm"]["cluster"] == suite.cluster


def test_up_again_reuses_running_daemons(lab: Lab) -> None:
    before = {n: json.loads((LAB_DIR / n / "state.json").read_text()) for n in lab.suites}
    start_lab()
    after = {n: json.loads((LAB_DIR / n / "state.json").read_text()) for n in lab.suites}
    assert after == before
    assert all(len(state["pids"]) == 7 for state in after.values())


@pytest.mark.parametrize("name", SUITES)
def test_leftover_throwaway_accounts_are_purged_but_not_a_running_sessions(
    lab: Lab, name: str
) -> None:
    suite = lab.suites[name]
    mine = throwaway_account()
    # a PID that no process has (above the kernel's pid_max), as a session that was interrupted
    leftover = f"sgt{0xFFFFFF:06x}00"
    for account in (mine, leftover):
        suite.run(
            "sacctmgr", "-i", "add", "account", account, "description=sgt", "organization=sgt"
        )
    try:
        assert purge_throwaway_accounts(suite) == [leftover]
        listed = suite.run("sacctmgr", "-nP", "show", "account", "format=account").stdout.split()
        assert mine in listed
        assert leftover not in listed
    finally:
        suite.run("sacctmgr", "-i", "delete", "account", mine)


@pytest.mark.parametrize("name", SUITES)
def test_mariadb_runs_on_the_data_directory_the_lab_initializes(lab: Lab, name: str) -> None:
    suite = SUITES[name]
    datadir = mariadb_datadir(suite)
    # forky's MariaDB moved its default to /var/lib/mariadb; the lab follows the package
    assert datadir == {"trixie": "/var/lib/mysql", "forky": "/var/lib/mariadb"}[name]
    assert (suite.root / datadir.lstrip("/") / "mysql").is_dir()
    running = lab.suites[name].run(
        "mariadb", "--socket=/run/mysqld/mysqld.sock", "-N", "-e", "SELECT @@datadir"
    )
    assert running.stdout.strip().rstrip("/") == datadir
