"""The crafted mutating requests of ``test_authorize_corpus.py``, as data (issue 4, "done when").

One :class:`Case` per crafted request: who sends it (a token of :data:`TOKENS`), in which API
versions, the method, the path and raw query, the Content-Type and the raw body bytes, what Slurm
must hold before (jobs, a throwaway account, a member) and the expected outcome: refused (status,
``source`` of the error) with Slurm unchanged, or allowed with an effect visible in Slurm.

Paths, queries and the lines of an effect are ``str.format`` templates over a :class:`Ctx` named
``c`` (``{c.v}``, ``{c.jobs[physics]}``, ``{c.acct}``); bodies are functions of the ``Ctx``.
Accounts: physics and chem are seeded (carol in both, default physics; bob in chem only); slurmdb
writes only ever succeed on ``sgt<hex>`` accounts made for the case, and the users ``games``
and ``lp`` of the chroot's passwd, which Slurm does not know otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CASES",
    "SPARE_USERS",
    "TOKENS",
    "Allowed",
    "Case",
    "Ctx",
    "JobSpec",
    "Refused",
    "Snapshot",
]

JOBS = ("slurm:read", "slurm:jobs:manage")
DB = (
    "slurmdb:read",
    "slurmdb:accounts:manage",
    "slurmdb:accounts_association:manage",
    "slurmdb:associations:manage",
    "slurmdb:users:manage",
    "slurmdb:users_association:manage",
)
SGT = "sgt[0-9a-f]{8}"
#: name -> (user, scopes, account patterns)
TOKENS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "carol@chem": ("carol", JOBS, ("chem",)),
    "bob@chem": ("bob", JOBS, ("chem",)),
    "carol@c.*": ("carol", JOBS, ("c.*",)),
    "carol@phys": ("carol", JOBS, ("phys",)),  # patterns match whole names: not physics
    "carol@CHEM": ("carol", JOBS, ("CHEM",)),  # names compare lowercased: never matches
    "dora@sgt": ("dora", DB, (SGT,)),
    "dora@chem+sgt": ("dora", DB, ("chem", SGT)),
}
#: users of the chroots' passwd that Slurm does not know: POST users creates "games", "lp" is
#: made a member of the case's account for DELETE user
SPARE_USERS = ("games", "lp")


@dataclass(frozen=True)
class JobSpec:
    """A job made with sbatch before the request: ``label`` in ``Ctx.jobs``, a HetJob for 2+."""

    label: str
    accounts: tuple[str, ...]
    user: str = "carol"
    #: not held, and waited for until it ends: the lab's nodes fail every batch job at start
    #: (FAILED), which is what a requeue needs: a batch job that has run
    finished: bool = False


@dataclass
class Ctx:
    """What one case runs with."""

    v: str
    cluster: str
    name: str  # job name unique to the case
    acct: str  # throwaway account name, sgt<8 hex>
    jobs: dict[str, str] = field(default_factory=dict)

    def job(self, account: object = ..., **extra: object) -> dict[str, Any]:
        """A held job description; ``account=...`` leaves the key out."""
        body: dict[str, Any] = {
            "name": self.name,
            "script": "#!/bin/sh\nsleep 300\n",
            "current_working_directory": "/",
            "environment": ["PATH=/usr/bin:/bin"],
            "hold": True,
        }
        if account is not ...:
            body["account"] = account
        body.update(extra)
        return body

    def fields(self) -> str:
        """The held job's members as JSON text, to splice into hand-written bytes."""
        return json.dumps(self.job())[1:-1]


@dataclass(frozen=True)
class Snapshot:
    """What Slurm holds: this case's jobs (squeue) and the slurmdb entities (sacctmgr)."""

    #: job id -> "account|state|comment"
    jobs: dict[str, str]
    #: "assoc|cluster|account|user|parent", "account|name|descr|org", "user|name|default|admin"
    db: frozenset[str]


Effect = Callable[[Ctx, Snapshot, Snapshot], None]
Body = Callable[[Ctx], bytes]


@dataclass(frozen=True)
class Refused:
    """Refused with ``status``; ``source`` is the error's source when given. Slurm unchanged."""

    status: int
    source: str | None = None


@dataclass(frozen=True)
class Allowed:
    """A 200 with empty ``errors``, and ``effect`` visible in Slurm (nothing else changed)."""

    effect: Effect


@dataclass(frozen=True)
class Case:
    """One crafted request."""

    id: str
    token: str
    method: str
    path: str  # template, with the raw query
    expect: Refused | Allowed
    body: Callable[[Ctx], bytes] | None = None
    content_type: str | None = "application/json"
    since: str = "v0.0.40"
    until: str = "v0.0.45"
    jobs: tuple[JobSpec, ...] = ()
    #: "account": the case's account exists (under root); "member": alice and lp are in it
    #: (lp's default); "physics": lp is in physics too
    db: frozenset[str] = frozenset()

    def applies(self, version: str) -> bool:
        """Whether the operation exists in ``version``."""
        return _key(self.since) <= _key(version) <= _key(self.until)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version[1:].split("."))


# --- effects ----------------------------------------------------------------------------------


def _same_except(before: dict[str, str], after: dict[str, str], ids: set[str]) -> None:
    assert {k: v for k, v in after.items() if k not in ids} == {
        k: v for k, v in before.items() if k not in ids
    }, (before, after)


def new_jobs(*accounts: str, state: str = "PENDING") -> Effect:
    """New jobs (or HetJob components) in exactly these accounts, in ``state``; nothing else."""

    def check(c: Ctx, before: Snapshot, after: Snapshot) -> None:
        new = {k: v for k, v in after.jobs.items() if k not in before.jobs}
        assert sorted(v.split("|")[0] for v in new.values()) == sorted(accounts), after.jobs
        assert all(v.split("|")[1] == state for v in new.values()), after.jobs
        _same_except(before.jobs, after.jobs, set(new))
        assert after.db == before.db

    return check


def job_is(label: str, *, state: str | None = None, comment: str | None = None) -> Effect:
    """Job ``label`` now has this state / comment, and nothing else changed."""

    def check(c: Ctx, before: Snapshot, after: Snapshot) -> None:
        job = c.jobs[label]
        account, now, text = after.jobs[job].split("|")
        assert account == before.jobs[job].split("|")[0], after.jobs
        if state is not None:
            assert now == state, after.jobs
        if comment is not None:
            assert text == comment, after.jobs
        _same_except(before.jobs, after.jobs, {job})
        assert after.db == before.db

    return check


def db_change(added: tuple[str, ...] = (), removed: tuple[str, ...] = ()) -> Effect:
    """slurmdb now has exactly these lines more and these less (templates over ``c``)."""

    def check(c: Ctx, before: Snapshot, after: Snapshot) -> None:
        plus = {line.format(c=c) for line in added}
        minus = {line.format(c=c) for line in removed}
        assert plus <= after.db, sorted(after.db - before.db)
        assert not plus & before.db, sorted(plus & before.db)
        assert minus <= before.db, sorted(minus - before.db)
        assert not minus & after.db, sorted(before.db - after.db)
        assert after.db == (before.db | plus) - minus, (
            sorted(after.db - before.db),
            sorted(before.db - after.db),
        )
        assert after.jobs == before.jobs

    return check


# --- bodies -----------------------------------------------------------------------------------


def js(build: Callable[[Ctx], object]) -> Callable[[Ctx], bytes]:
    """A body: ``build(c)`` as JSON."""
    return lambda c: json.dumps(build(c)).encode()


def raw(template: str) -> Callable[[Ctx], bytes]:
    """A body written by hand: ``{f}`` = a held job's members, ``{n}`` its name, ``{a}`` acct."""
    return lambda c: (
        template.replace("{f}", c.fields()).replace("{n}", c.name).replace("{a}", c.acct).encode()
    )


PHYSICS = JobSpec("physics", ("physics",))
CHEM = JobSpec("chem", ("chem",))
HET = JobSpec("het", ("chem", "physics"))
RAN_PHYSICS = JobSpec("physics", ("physics",), finished=True)
RAN_CHEM = JobSpec("chem", ("chem",), finished=True)
SUBMIT = "/slurm/{c.v}/job/submit"
ALLOCATE = "/slurm/{c.v}/job/allocate"
ASSOCS = "/slurmdb/{c.v}/associations/"
ASSOC = "/slurmdb/{c.v}/association/"
F403 = Refused(403)


def _allocation(c: Ctx, account: object = ...) -> dict[str, Any]:
    # Not held: slurmrestd waits for the allocation (a held one blocks the request).
    job = c.job(account)
    del job["script"], job["hold"]
    return job


def _submit_cases() -> list[Case]:
    def submit(
        id: str,
        token: str,
        expect: Refused | Allowed,
        body: Callable[[Ctx], bytes],
        content_type: str | None = "application/json",
    ) -> Case:
        return Case(f"submit-{id}", token, "POST", SUBMIT, expect, body, content_type)

    job = js(lambda c: {"job": c.job("chem")})
    return [
        submit("chem", "carol@chem", Allowed(new_jobs("chem")), job),
        submit("physics", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"job": c.job("physics")})),
        submit("default-chem", "bob@chem", Allowed(new_jobs("chem")),
               js(lambda c: {"job": c.job()})),
        submit("default-physics", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"job": c.job()})),
        submit("null-is-default", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"job": c.job(None)})),
        submit("CHEM-lowercased", "carol@chem", Allowed(new_jobs("chem")),
               js(lambda c: {"job": c.job("CHEM")})),
        submit("Physics-lowercased", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"job": c.job("Physics")})),
        submit("csv-account", "carol@chem", Refused(403, "body.job.account"),
               js(lambda c: {"job": c.job("chem,physics")})),
        submit("leading-space", "carol@chem", Refused(403, "body.job.account"),
               js(lambda c: {"job": c.job(" physics")})),
        submit("trailing-space", "carol@chem", Refused(403, "body.job.account"),
               js(lambda c: {"job": c.job("chem ")})),
        submit("nul-in-value", "carol@chem", Refused(400, "body.job.account"),
               js(lambda c: {"job": c.job("chem\x00physics")})),
        submit("nul-in-key", "carol@chem", Refused(400),
               js(lambda c: {"job": {**c.job("chem"), "account\x00x": "physics"}})),
        submit("duplicate-account-last-wins", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem", "account": "physics"}}')),
        submit("duplicate-account-same", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem", "account": "chem"}}')),
        submit("duplicate-job-key", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem"}, "job": {{f}, "account": "physics"}}')),
        submit("Account-key", "carol@chem", Refused(403, "body.job.Account"),
               js(lambda c: {"job": {**c.job(), "Account": "chem"}})),
        submit("ACCOUNT-key-beside-account", "carol@chem", Refused(403, "body.job.ACCOUNT"),
               js(lambda c: {"job": {**c.job("chem"), "ACCOUNT": "physics"}})),
        submit("Job-key", "carol@chem", Refused(403, "body.Job"),
               js(lambda c: {"Job": c.job("physics")})),
        submit("account-number", "carol@chem", Refused(403), js(lambda c: {"job": c.job(5)})),
        submit("account-array", "carol@chem", Refused(403),
               js(lambda c: {"job": c.job(["chem"])})),
        submit("x-yaml", "carol@chem", Refused(400, "Content-Type"),
               raw("job:\n  name: {n}\n  account: physics\n  hold: true\n"
                   "  current_working_directory: /\n  script: |\n    #!/bin/sh\n    sleep 300\n"),
               "application/x-yaml"),
        submit("text-yaml-json-bytes", "carol@chem", Refused(400, "Content-Type"), job,
               "text/yaml"),
        submit("application-yaml", "carol@chem", Refused(400, "Content-Type"), job,
               "application/yaml"),
        submit("json-charset", "carol@chem", Refused(400, "Content-Type"), job,
               "application/json; charset=utf-8"),
        submit("no-content-type", "carol@chem", Refused(400, "Content-Type"), job, None),
        submit("comment", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, /* "account": "chem", */ "account": "physics"}}')),
        submit("nan", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem", "priority": NaN}}')),
        submit("huge-number", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem", "nice": 1e999}}')),
        submit("trailing-bytes", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem"}}{"job": {{f}, "account": "physics"}}')),
        submit("bom", "carol@chem", Refused(400, "body"),
               lambda c: b"\xef\xbb\xbf" + json.dumps({"job": c.job("chem")}).encode()),
        submit("utf-16", "carol@chem", Refused(400, "body"),
               lambda c: json.dumps({"job": c.job("chem")}).encode("utf-16")),
        submit("deep-nesting", "carol@chem", Refused(400, "body"),
               raw('{"job": {{f}, "account": "chem", "comment": ' + "[" * 5000 + "]" * 5000
                   + "}}")),
        submit("not-an-object", "carol@chem", Refused(400, "body"),
               js(lambda c: [{"job": c.job("chem")}])),
        submit("empty-body", "carol@chem", Refused(400, "body"), lambda c: b""),
        submit("script-only-chem", "carol@chem", Allowed(new_jobs("chem")),
               js(lambda c: {"script": c.job()["script"],
                             "job": {k: v for k, v in c.job("chem").items() if k != "script"}})),
        submit("script-only-default-physics", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"script": c.job()["script"],
                             "job": {k: v for k, v in c.job().items() if k != "script"}})),
        submit("hetjob-uniform-chem", "carol@chem", Allowed(new_jobs("chem", "chem")),
               js(lambda c: {"jobs": [c.job("chem"), c.job("chem")]})),
        submit("hetjob-mixed", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"jobs": [c.job("chem"), c.job("physics")]})),
        submit("hetjob-component-default-physics", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"jobs": [c.job("chem"), c.job()]})),
        submit("hetjob-component-default-chem", "bob@chem", Allowed(new_jobs("chem", "chem")),
               js(lambda c: {"jobs": [c.job("chem"), c.job()]})),
        submit("hetjob-script-only-mixed", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"script": c.job()["script"],
                             "jobs": [{k: v for k, v in c.job(a).items() if k != "script"}
                                      for a in ("chem", "physics")]})),
        submit("job-and-jobs", "carol@chem", Refused(403, "account:physics"),
               js(lambda c: {"job": c.job("chem"), "jobs": [c.job("physics")]})),
        submit("pattern-c.*", "carol@c.*", Allowed(new_jobs("chem")), job),
        submit("pattern-phys-is-not-physics", "carol@phys", Refused(403, "account:physics"),
               js(lambda c: {"job": c.job("physics")})),
        submit("pattern-CHEM-never-matches", "carol@CHEM", Refused(403, "account:chem"), job),
    ]  # fmt: skip


def _allocate_cases() -> list[Case]:
    def allocate(id: str, expect: Refused | Allowed, body: Callable[[Ctx], bytes]) -> Case:
        return Case(f"allocate-{id}", "carol@chem", "POST", ALLOCATE, expect, body,
                    since="v0.0.41")  # fmt: skip

    return [
        allocate("chem", Allowed(new_jobs("chem", state="RUNNING")),
                 js(lambda c: {"job": _allocation(c, "chem")})),
        allocate("physics", Refused(403, "account:physics"),
                 js(lambda c: {"job": _allocation(c, "physics")})),
        allocate("default-physics", Refused(403, "account:physics"),
                 js(lambda c: {"job": _allocation(c)})),
        allocate("hetjob-mixed", Refused(403, "account:physics"),
                 js(lambda c: {"hetjob": [_allocation(c, "chem"), _allocation(c, "physics")]})),
        allocate("duplicate-account", Refused(400, "body"),
                 lambda c: json.dumps({"job": _allocation(c, "chem")})[:-2].encode()
                 + b', "account": "physics"}}'),
    ]  # fmt: skip


def _job_cases() -> list[Case]:
    def case(
        id: str,
        method: str,
        path: str,
        expect: Refused | Allowed,
        *jobs: JobSpec,
        body: Callable[[Ctx], bytes] | None = None,
        since: str = "v0.0.40",
        who: str = "carol@chem",
    ) -> Case:
        return Case(id, who, method, path, expect, body, jobs=jobs, since=since)  # fmt: skip

    job = "/slurm/{c.v}/job/"
    bulk = "/slurm/{c.v}/jobs/"
    comment = js(lambda c: {"comment": "sgt"})
    return [
        case("update-set-physics", "POST", job + "{c.jobs[chem]}", Refused(403, "account:physics"),
             CHEM, body=js(lambda c: {"account": "physics"})),
        case("update-set-PHYSICS", "POST", job + "{c.jobs[chem]}",
             Refused(403, "account:physics"), CHEM, body=js(lambda c: {"account": "PHYSICS"})),
        case("update-physics-job-comment", "POST", job + "{c.jobs[physics]}",
             Refused(403, "account:physics"), PHYSICS, body=comment),
        case("update-physics-job-to-chem", "POST", job + "{c.jobs[physics]}",
             Refused(403, "account:physics"), PHYSICS, body=js(lambda c: {"account": "chem"})),
        case("update-hetjob-mixed", "POST", job + "{c.jobs[het]}",
             Refused(403, "account:physics"), HET, body=comment),
        case("update-duplicate-account", "POST", job + "{c.jobs[chem]}", Refused(400, "body"),
             CHEM, body=raw('{"comment": "sgt", "account": "chem", "account": "physics"}')),
        case("update-unknown-job", "POST", job + "999999", Refused(403, "job:999999"),
             body=comment),
        case("update-chem-comment", "POST", job + "{c.jobs[chem]}",
             Allowed(job_is("chem", comment="sgt")), CHEM, body=comment),
        case("update-chem-stays-chem", "POST", job + "{c.jobs[chem]}",
             Allowed(job_is("chem", comment="sgt")), CHEM,
             body=js(lambda c: {"account": "chem", "comment": "sgt"})),
        case("delete-physics", "DELETE", job + "{c.jobs[physics]}",
             Refused(403, "account:physics"), PHYSICS),
        # The path's job id wins over a job_id in the body (measured): only the chem job changes.
        case("update-body-job-id-physics", "POST", job + "{c.jobs[chem]}",
             Allowed(job_is("chem", comment="sgt")), CHEM, PHYSICS,
             body=js(lambda c: {"job_id": int(c.jobs["physics"]), "comment": "sgt"})),
        case("delete-hetjob-mixed", "DELETE", job + "{c.jobs[het]}",
             Refused(403, "account:physics"), HET),
        # slurmrestd refuses "123+1" in its own lookup path, so the job cannot be checked: 403
        case("delete-hetjob-physics-component", "DELETE", job + "{c.jobs[het]}+1", F403, HET),
        case("delete-physics-with-body", "DELETE", job + "{c.jobs[physics]}",
             Refused(400, "body"), PHYSICS, body=js(lambda c: {"account": "chem"})),
        case("delete-physics-sigkill", "DELETE", job + "{c.jobs[physics]}?signal=SIGKILL",
             Refused(403, "account:physics"), PHYSICS),
        case("delete-chem", "DELETE", job + "{c.jobs[chem]}",
             Allowed(job_is("chem", state="CANCELLED")), CHEM),
        case("delete-chem-sigkill", "DELETE", job + "{c.jobs[chem]}?signal=SIGKILL",
             Allowed(job_is("chem", state="CANCELLED")), CHEM),
        case("requeue-physics", "GET", job + "{c.jobs[physics]}/requeue",
             Refused(403, "account:physics"), RAN_PHYSICS, since="v0.0.45"),
        case("requeue-chem", "GET", job + "{c.jobs[chem]}/requeue",
             Allowed(job_is("chem", state="PENDING")), RAN_CHEM, since="v0.0.45"),
        case("requeue-bulk-mixed", "POST", "/slurm/{c.v}/jobs/requeue",
             Refused(403, "account:physics"), RAN_CHEM, RAN_PHYSICS, since="v0.0.45",
             body=js(lambda c: {"jobs": [c.jobs["chem"], c.jobs["physics"]]})),
        case("requeue-bulk-chem", "POST", "/slurm/{c.v}/jobs/requeue",
             Allowed(job_is("chem", state="PENDING")), RAN_CHEM, since="v0.0.45",
             body=js(lambda c: {"jobs": [c.jobs["chem"]]})),
        case("bulk-no-filter", "DELETE", bulk, Refused(403, "accounts"), PHYSICS,
             body=js(lambda c: {"signal": "SIGKILL"})),
        case("bulk-name-only", "DELETE", bulk, Refused(403, "accounts"), PHYSICS,
             body=js(lambda c: {"job_name": c.name, "signal": "SIGKILL"})),
        case("bulk-jobs-list-only", "DELETE", bulk, Refused(403, "accounts"), PHYSICS,
             body=js(lambda c: {"jobs": [c.jobs["physics"]]})),
        case("bulk-account-physics", "DELETE", bulk, Refused(403, "account:physics"), PHYSICS,
             body=js(lambda c: {"account": "physics", "job_name": c.name})),
        case("bulk-account-csv", "DELETE", bulk, Refused(403, "body.account"), PHYSICS,
             body=js(lambda c: {"account": "chem,physics", "job_name": c.name})),
        case("bulk-Account-key", "DELETE", bulk, Refused(403, "body.Account"), PHYSICS,
             body=js(lambda c: {"Account": "chem", "job_name": c.name})),
        case("bulk-chem-filter-physics-job", "DELETE", bulk, Refused(403, "account:physics"),
             PHYSICS, body=js(lambda c: {"account": "chem", "jobs": [c.jobs["physics"]]})),
        # slurmctld ANDs the filters: the physics job of the same name stays.
        case("bulk-chem", "DELETE", bulk, Allowed(job_is("chem", state="CANCELLED")),
             CHEM, PHYSICS,
             body=js(lambda c: {"account": "chem", "job_name": c.name, "signal": "SIGKILL"})),
    ]  # fmt: skip


def _db_cases() -> list[Case]:
    acct = frozenset({"account"})
    member = frozenset({"account", "member"})
    # lp in physics too: a refused delete that slipped through would visibly remove it
    lp_physics = frozenset({"account", "member", "physics"})

    def case(
        id: str,
        method: str,
        path: str,
        expect: Refused | Allowed,
        body: Callable[[Ctx], bytes] | None = None,
        *,
        db: frozenset[str] = acct,
        who: str = "dora@sgt",
    ) -> Case:
        return Case(id, who, method, path, expect, body, db=db)  # fmt: skip

    accounts = "/slurmdb/{c.v}/accounts/"
    acc_assoc = "/slurmdb/{c.v}/accounts_association/"
    users_assoc = "/slurmdb/{c.v}/users_association/"
    users = "/slurmdb/{c.v}/users/"

    def new_account(*names: str) -> Callable[[Ctx], bytes]:
        return js(
            lambda c: {
                "accounts": [
                    {"name": n.format(c=c), "description": "sgt", "organization": "sgt"}
                    for n in names
                ]
            }
        )

    def users_association(
        *accounts: str, user: dict[str, str] | None = None, who: str = "alice"
    ) -> Body:
        return js(
            lambda c: {
                "association_condition": {
                    "users": [who],
                    "clusters": [c.cluster],
                    "accounts": [a.format(c=c) for a in accounts],
                },
                "user": user or {},
            }
        )

    def association(account: str, user: str = "alice", **extra: str) -> Body:
        return js(
            lambda c: {
                "associations": [
                    {"account": account.format(c=c), "user": user, "cluster": c.cluster, **extra}
                ]
            }
        )

    alice_in = "assoc|{c.cluster}|{c.acct}|alice|"
    return [
        case("accounts-new", "POST", accounts, Allowed(db_change(("account|{c.acct}|sgt|sgt",))),
             new_account("{c.acct}"), db=frozenset()),
        case("accounts-physics", "POST", accounts, Refused(403, "account:physics"),
             new_account("physics")),
        case("accounts-new-and-chem", "POST", accounts, Refused(403, "account:chem"),
             new_account("{c.acct}", "chem"), db=frozenset()),
        case("accounts-csv-name", "POST", accounts, Refused(403, "body.accounts[0].name"),
             new_account("{c.acct},physics"), db=frozenset()),
        case("accounts-duplicate-name", "POST", accounts, Refused(400, "body"),
             raw('{"accounts": [{"name": "{a}", "name": "physics", "description": "sgt", '
                 '"organization": "sgt"}]}'), db=frozenset()),
        case("accounts-association-new", "POST", acc_assoc,
             # makes the account too, with the description and organization given
             Allowed(db_change(("account|{c.acct}|sgt|sgt", "assoc|{c.cluster}|{c.acct}||root"))),
             js(lambda c: {"association_condition": {"accounts": [c.acct],
                                                     "clusters": [c.cluster]},
                           "account": {"description": "sgt", "organization": "sgt"}}),
             db=frozenset()),
        case("accounts-association-physics", "POST", acc_assoc, Refused(403, "account:physics"),
             js(lambda c: {"association_condition": {"accounts": ["physics"],
                                                     "clusters": [c.cluster]}})),
        case("accounts-association-under-physics", "POST", acc_assoc,
             Refused(403, "account:physics"),
             js(lambda c: {"association_condition": {
                 "accounts": [c.acct], "clusters": [c.cluster],
                 "association": {"parent": "physics"}}}), db=frozenset()),
        case("accounts-association-csv-string", "POST", acc_assoc, Refused(403),
             js(lambda c: {"association_condition": {"accounts": f"{c.acct},physics",
                                                     "clusters": [c.cluster]}})),
        case("associations-alice", "POST", ASSOCS, Allowed(db_change((alice_in,))),
             association("{c.acct}")),
        case("associations-physics", "POST", ASSOCS, Refused(403, "account:physics"),
             association("physics", user="bob")),
        case("associations-parent-physics", "POST", ASSOCS, Refused(403, "account:physics"),
             association("{c.acct}", parent_account="physics")),
        case("associations-chem-token-sgt", "POST", ASSOCS, Refused(403, "account:chem"),
             js(lambda c: {"associations": [
                 {"account": c.acct, "user": "alice", "cluster": c.cluster},
                 {"account": "chem", "user": "alice", "cluster": c.cluster}]})),
        case("users-association-alice", "POST", users_assoc, Allowed(db_change((alice_in,))),
             users_association("{c.acct}")),
        case("users-association-and-chem", "POST", users_assoc, Refused(403, "account:chem"),
             users_association("{c.acct}", "chem")),
        case("users-association-default-physics", "POST", users_assoc,
             Refused(403, "account:physics"),
             users_association("{c.acct}", user={"defaultaccount": "physics"}, who="bob")),
        case("users-new-with-associations", "POST", users,
             # slurmrestd ignores associations here (warning), and the default with them
             Allowed(db_change(("user|games||None",))),
             js(lambda c: {"users": [{
                 "name": "games", "default": {"account": c.acct},
                 "associations": [{"account": c.acct, "cluster": c.cluster, "user": "games"}]}]})),
        case("users-default-chem", "POST", users, Refused(403, "account:chem"),
             js(lambda c: {"users": [{"name": "games", "default": {"account": "chem"}}]})),
        case("users-associations-physics", "POST", users, Refused(403, "account:physics"),
             js(lambda c: {"users": [{"name": "games", "associations": [
                 {"account": "physics", "cluster": c.cluster, "user": "games"}]}]})),
        case("delete-account", "DELETE", "/slurmdb/{c.v}/account/{c.acct}",
             Allowed(db_change(removed=("account|{c.acct}|sgt|sgt",
                                        "assoc|{c.cluster}|{c.acct}||root")))),
        case("delete-account-physics", "DELETE", "/slurmdb/{c.v}/account/physics",
             Refused(403, "account:physics")),
        case("delete-account-CHEM", "DELETE", "/slurmdb/{c.v}/account/CHEM",
             Refused(403, "account:chem")),
        case("delete-account-csv", "DELETE", "/slurmdb/{c.v}/account/{c.acct},physics",
             Refused(403, "path:account_name")),
        case("delete-assocs-alice", "DELETE", ASSOCS + "?account={c.acct}&user=alice",
             Allowed(db_change(removed=(alice_in,))), db=member),
        case("delete-assoc-alice", "DELETE", ASSOC + "?account={c.acct}&user=alice",
             Allowed(db_change(removed=(alice_in,))), db=member),
        case("delete-assocs-physics", "DELETE", ASSOCS + "?account=physics&user=lp",
             Refused(403, "account:physics"), db=lp_physics),
        case("delete-assoc-physics", "DELETE", ASSOC + "?account=physics&user=lp",
             Refused(403, "account:physics"), db=lp_physics),
        case("delete-assocs-no-account", "DELETE", ASSOCS + "?user=alice",
             Refused(403, "accounts"), db=member),
        case("delete-assocs-empty-account", "DELETE", ASSOCS + "?account=&user=alice",
             Refused(403), db=member),
        case("delete-assocs-semicolon", "DELETE", ASSOCS + "?account={c.acct};physics",
             Refused(403), db=member),
        # slurmrestd would read two pairs; the gateway sees one pair with two "=": 400
        case("delete-assocs-semicolon-pair", "DELETE",
             ASSOCS + "?user=lp;account=physics&account={c.acct}", Refused(400, "query"),
             db=lp_physics),
        case("delete-assocs-repeated", "DELETE",
             ASSOCS + "?account={c.acct}&account=physics&user=lp",
             Refused(403, "account:physics"), db=lp_physics),
        case("delete-assocs-encoded-comma", "DELETE",
             ASSOCS + "?account={c.acct}%2Cphysics&user=lp",
             Refused(403, "account:physics"), db=lp_physics),
        case("delete-assocs-raw-comma", "DELETE",
             ASSOCS + "?account={c.acct},physics&user=lp", Refused(400, "query"),
             db=lp_physics),
        case("delete-assocs-Account", "DELETE",
             ASSOCS + "?Account=physics&account={c.acct}&user=lp", Refused(403),
             db=lp_physics),
        case("delete-assocs-nul", "DELETE", ASSOCS + "?account=physics%00&user=lp",
             Refused(400, "query"), db=lp_physics),
        case("delete-assocs-encoded-space", "DELETE", ASSOCS + "?account=physics%20&user=lp",
             Refused(403), db=lp_physics),
        case("delete-assocs-plus-space", "DELETE", ASSOCS + "?account=physics+&user=lp",
             Refused(403), db=lp_physics),
        case("delete-assocs-double-equals", "DELETE", ASSOCS + "?account==physics&user=lp",
             Refused(400, "query"), db=lp_physics),
        case("delete-assocs-parent-physics", "DELETE",
             ASSOCS + "?account={c.acct}&parent_account=physics", Refused(403, "account:physics"),
             db=member),
        case("delete-assocs-body-as-query", "DELETE", ASSOCS, Refused(400, "body"),
             js(lambda c: {"account": "physics", "user": "lp"}), db=lp_physics),
        case("delete-assocs-chem-token-sgt", "DELETE", ASSOCS + "?account=chem&user=carol",
             Refused(403, "account:chem")),
        case("delete-user-lp", "DELETE", "/slurmdb/{c.v}/user/lp",
             Allowed(db_change(removed=("user|lp|{c.acct}|None",
                                        "assoc|{c.cluster}|{c.acct}|lp|"))),
             db=member),
        case("delete-user-bob", "DELETE", "/slurmdb/{c.v}/user/bob", Refused(403, "account:chem")),
        case("delete-user-carol", "DELETE", "/slurmdb/{c.v}/user/carol",
             Refused(403, "account:physics"), who="dora@chem+sgt"),
        case("delete-user-unknown", "DELETE", "/slurmdb/{c.v}/user/news",
             Refused(403, "user:news")),
    ]  # fmt: skip


CASES: tuple[Case, ...] = (*_submit_cases(), *_allocate_cases(), *_job_cases(), *_db_cases())
