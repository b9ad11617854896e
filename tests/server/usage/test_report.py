"""The arithmetic of a usage report on recorded lab jobs: clipping to the window, running jobs up
to now, TRES-seconds and minutes, job counts, filters, groups, duplicates across slices."""

from __future__ import annotations

from typing import Any

from slurmgate.server.usage.records import Job, read_jobs
from slurmgate.server.usage.report import overlap, summarize
from slurmgate.server.usage.request import UsageQuery
from tests.server.usage.recorded import FORKY, TRIXIE, answer, by_id, derived

RECORDS = by_id(answer(FORKY))
#: the four jobs submitted together: alice/physics 2 CPUs 40 s, bob/chem 1 CPU 25 s,
#: carol/chem 3 CPUs 15 s, carol/physics 1 CPU 60 s
FINISHED = (37411, 37412, 37413, 37414)
T0 = RECORDS[37411]["time"]["start"]
#: four jobs still running when recorded, started together
RUNNING = (37417, 37418, 37419, 37420)
R0 = RECORDS[37417]["time"]["start"]


def everyone(account: str) -> bool:
    return True


def jobs(*ids: int, records: dict[int, dict[str, Any]] = RECORDS) -> list[Job]:
    return read_jobs({"jobs": [records[i] for i in ids]})


def query(
    start: int,
    end: int,
    group_by: tuple[str, ...] = ("account", "user"),
    *,
    accounts: tuple[str, ...] = (),
    users: tuple[str, ...] = (),
) -> UsageQuery:
    return UsageQuery(start, end, accounts, users, group_by)


def seconds_of(usage_json: dict[str, Any], **key: str) -> dict[str, int]:
    for group in usage_json["groups"]:
        if all(group[k] == v for k, v in key.items()):
            seconds: dict[str, int] = group["tres_seconds"]
            return seconds
    raise AssertionError(f"no group {key} in {usage_json['groups']}")


def test_the_recorded_jobs_are_what_the_tests_assume() -> None:
    ends = [RECORDS[i]["time"]["end"] - RECORDS[i]["time"]["start"] for i in FINISHED]
    assert ends == [40, 25, 15, 60]
    assert {RECORDS[i]["time"]["start"] for i in FINISHED} == {T0}
    assert all(RECORDS[i]["time"]["end"] == 0 for i in RUNNING)


def test_a_job_inside_the_window_counts_whole() -> None:
    (job,) = jobs(37411)
    assert overlap(job, T0 - 100, T0 + 100, now=T0 + 1000) == 40


def test_jobs_over_the_window_edges_count_their_part_inside() -> None:
    alice, bob, carol_chem, carol_physics = jobs(*FINISHED)
    start, end = T0 + 20, T0 + 50
    assert overlap(alice, start, end, now=T0 + 1000) == 20  # T0+20 .. T0+40
    assert overlap(bob, start, end, now=T0 + 1000) == 5  # T0+20 .. T0+25
    assert overlap(carol_chem, start, end, now=T0 + 1000) is None  # ended at T0+15
    assert overlap(carol_physics, start, end, now=T0 + 1000) == 30  # the whole window


def test_a_job_over_both_edges_counts_the_window() -> None:
    (job,) = jobs(37414)
    assert overlap(job, T0 + 10, T0 + 11, now=T0 + 1000) == 1


def test_touching_the_window_is_not_running_in_it() -> None:
    (job,) = jobs(37411)  # T0 .. T0+40
    assert overlap(job, T0 + 40, T0 + 100, now=T0 + 1000) is None
    assert overlap(job, T0 - 100, T0, now=T0 + 1000) is None
    assert overlap(job, T0 - 100, T0 + 1, now=T0 + 1000) == 1


def test_a_job_that_ran_no_time_inside_counts_as_a_job_with_no_usage() -> None:
    record = derived(RECORDS[37411], time_end=T0)
    (job,) = read_jobs({"jobs": [record]})
    assert overlap(job, T0 - 10, T0 + 10, now=T0 + 1000) == 0
    usage = summarize(
        [job], query(T0 - 10, T0 + 10), now=T0 + 1000, cluster="forky", allowed=everyone
    )
    assert usage.total.jobs == 1
    assert usage.total.seconds["cpu"] == 0


def test_a_job_that_never_started_counts_nowhere() -> None:
    record = derived(RECORDS[37411], time_start=0, time_end=T0 + 5)
    (job,) = read_jobs({"jobs": [record]})
    assert overlap(job, T0 - 10, T0 + 10, now=T0 + 1000) is None


def test_running_jobs_count_up_to_now_or_the_windows_end() -> None:
    (job,) = jobs(37417)
    assert overlap(job, R0 - 60, R0 + 3600, now=R0 + 90) == 90
    assert overlap(job, R0 + 10, R0 + 30, now=R0 + 90) == 20
    assert overlap(job, R0 + 100, R0 + 200, now=R0 + 90) is None  # not yet in that window


def test_sums_per_account_and_user_over_the_edges() -> None:
    start, end = T0 + 10, T0 + 30
    usage: dict[str, Any] = summarize(
        jobs(*FINISHED), query(start, end), now=T0 + 1000, cluster="forky", allowed=everyone
    ).as_json(("account", "user"))
    assert [(g["account"], g["user"], g["jobs"]) for g in usage["groups"]] == [
        ("chem", "bob", 1),
        ("chem", "carol", 1),
        ("physics", "alice", 1),
        ("physics", "carol", 1),
    ]
    # (seconds inside) x (count): cpu, node and billing, as allocated
    assert seconds_of(usage, account="physics", user="alice") == {
        "cpu": 20 * 2,
        "mem": 0,
        "gres/gpu": 0,
        "billing": 20 * 2,
        "node": 20,
    }
    assert seconds_of(usage, account="chem", user="bob")["cpu"] == 15 * 1
    assert seconds_of(usage, account="chem", user="carol")["cpu"] == 5 * 3
    assert seconds_of(usage, account="physics", user="carol")["cpu"] == 20 * 1
    assert usage["total"]["jobs"] == 4
    assert usage["total"]["tres_seconds"]["cpu"] == 40 + 15 + 15 + 20
    assert usage["total"]["tres_minutes"]["cpu"] == round(90 / 60, 3)
    assert usage["groups"][0]["tres_minutes"]["cpu"] == 0.25


def test_group_by_user_and_by_account() -> None:
    start, end = T0, T0 + 60
    records = jobs(*FINISHED)
    by_user = summarize(
        records, query(start, end, ("user",)), now=T0 + 99, cluster="forky", allowed=everyone
    )
    assert {key: g.seconds["cpu"] for key, g in by_user.groups.items()} == {
        ("alice",): 80,
        ("bob",): 25,
        ("carol",): 45 + 60,
    }
    by_account = summarize(
        records, query(start, end, ("account",)), now=T0 + 99, cluster="forky", allowed=everyone
    )
    assert {key: (g.jobs, g.seconds["cpu"]) for key, g in by_account.groups.items()} == {
        ("chem",): (2, 25 + 45),
        ("physics",): (2, 80 + 60),
    }


def test_mem_and_gpu_seconds() -> None:
    record = derived(
        RECORDS[37411],
        allocated=[
            {"type": "cpu", "name": "", "count": 4},
            {"type": "mem", "name": "", "count": 2048},
            {"type": "gres", "name": "gpu", "count": 2},
            {"type": "gres", "name": "gpu:h100", "count": 2},
        ],
    )
    usage = summarize(
        read_jobs({"jobs": [record]}),
        query(T0 + 10, T0 + 40),
        now=T0 + 99,
        cluster="forky",
        allowed=everyone,
    )
    assert usage.total.seconds == {
        "cpu": 120,
        "mem": 2048 * 30,
        "gres/gpu": 60,
        "billing": 0,
        "node": 0,
    }
    minutes = usage.total.as_json()["tres_minutes"]
    assert minutes == {"cpu": 2.0, "mem": 1024.0, "gres/gpu": 1.0, "billing": 0.0, "node": 0.0}


def test_running_jobs_in_a_report() -> None:
    usage = summarize(
        jobs(*RUNNING), query(R0 - 10, R0 + 86400), now=R0 + 30, cluster="forky", allowed=everyone
    )
    assert usage.running == 4
    # 1 + 1 + 2 + 2 CPUs for the 30 s up to now
    assert usage.total.seconds["cpu"] == 6 * 30


def test_a_record_from_several_slices_counts_once() -> None:
    records = jobs(*FINISHED) + jobs(*FINISHED) + jobs(37411)
    usage = summarize(records, query(T0, T0 + 60), now=T0 + 99, cluster="forky", allowed=everyone)
    assert usage.total.jobs == 4


def test_each_run_of_a_requeued_job_counts() -> None:
    first = RECORDS[37411]
    again = derived(first, time_eligible=T0 + 100, time_start=T0 + 100, time_end=T0 + 110)
    usage = summarize(
        read_jobs({"jobs": [first, again]}),
        query(T0, T0 + 200),
        now=T0 + 999,
        cluster="forky",
        allowed=everyone,
    )
    assert usage.total.jobs == 2
    assert usage.total.seconds["cpu"] == (40 + 10) * 2


def test_filters_use_each_records_own_account_and_user() -> None:
    start, end = T0, T0 + 60
    records = jobs(*FINISHED)
    physics = summarize(
        records,
        query(start, end, accounts=("physics",)),
        now=T0 + 99,
        cluster="forky",
        allowed=everyone,
    )
    assert set(physics.groups) == {("physics", "alice"), ("physics", "carol")}
    carol = summarize(
        records, query(start, end, users=("carol",)), now=T0 + 99, cluster="forky", allowed=everyone
    )
    assert set(carol.groups) == {("chem", "carol"), ("physics", "carol")}


def test_the_tokens_accounts_apply_to_every_grouping() -> None:
    records = jobs(*FINISHED)

    def physics_only(account: str) -> bool:
        return account == "physics"

    by_user = summarize(
        records, query(T0, T0 + 60, ("user",)), now=T0 + 99, cluster="forky", allowed=physics_only
    )
    # carol's chem job is not in her total, bob has none
    assert {key: g.seconds["cpu"] for key, g in by_user.groups.items()} == {
        ("alice",): 80,
        ("carol",): 60,
    }
    assert by_user.total.jobs == 2


def test_a_job_moved_to_another_account_counts_where_its_record_says() -> None:
    # slurmdbd answered a query for physics with a record now in chem (its account changed):
    # the record's own account decides, whatever the upstream filter matched.
    moved = derived(RECORDS[37414], account="chem")
    usage = summarize(
        read_jobs({"jobs": [RECORDS[37411], moved]}),
        query(T0, T0 + 60, accounts=("physics",)),
        now=T0 + 99,
        cluster="forky",
        allowed=lambda a: a == "physics",
    )
    assert set(usage.groups) == {("physics", "alice")}


def test_other_clusters_records_are_left_out() -> None:
    usage = summarize(
        jobs(*FINISHED) + read_jobs(answer(TRIXIE)),
        query(0, 2**40),
        now=R0 + 100,  # the trixie jobs were running then
        cluster="forky",
        allowed=everyone,
    )
    assert usage.total.jobs == 4
