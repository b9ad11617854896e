"""Loading the policy files: the shipped ones are valid, broken ones report every problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from slurmgate.policies.routing import CachePolicy, ValueForm, WhenAbsent
from slurmgate.policies.rules import (
    PolicyError,
    load_account_rules,
    load_cache_rules,
    load_scope_rules,
)


def test_shipped_policy_files_load() -> None:
    scopes = load_scope_rules()
    assert "slurm:jobs:manage" in scopes.scopes
    assert {rule.scope for rule in scopes.rules} <= set(scopes.scopes)
    # "hardware" is the group of the gateway's own /hardware/... (policies/endpoints/hardware.yaml)
    cache = load_cache_rules(own_groups=frozenset({"hardware"}))
    assert cache.default is CachePolicy.NONE
    assert cache.groups == {
        "job", "jobs", "nodes", "licenses", "partitions", "reservations", "shares", "slurm-conf",
        "db-jobs", "associations", "users", "wckeys", "instances", "accounts", "clusters", "qos",
        "tres", "db-config",
    }  # fmt: skip
    assert "hardware" in {group for rule in cache.invalidations for group in rule.groups}
    with pytest.raises(PolicyError, match="group 'hardware' is not the 'group' of any"):
        load_cache_rules()
    assert all(rule.group for rule in cache.rules if rule.policy is not CachePolicy.NONE)
    assert all(not rule.group for rule in cache.rules if rule.policy is CachePolicy.NONE)
    accounts = load_account_rules()
    assert accounts.detect.search("parent_account")
    assert accounts.detect.search("with_sub_accts")


def test_scope_file_problems_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "scopes.toml"
    path.write_text(
        """
[scopes]
"slurm:read" = "read"
"Bad Name" = "x"

[[rule]]
namespace = "slurm"
path = "/**"
methods = ["GET", "FETCH"]
scope = "slurm:typo"

[[rule]]
namespace = "slurm"
path = "/reconfigure"
methods = ["GET"]
scope = "slurm:read"
mutating = true
colour = "blue"
""",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        load_scope_rules(path)
    assert list(caught.value.problems) == [
        "scopes.toml: [scopes] 'Bad Name': scope names look like 'area:thing:verb'",
        "scopes.toml: [[rule]] #1: unknown method 'FETCH'",
        "scopes.toml: [[rule]] #1: scope 'slurm:typo' is not declared in [scopes]",
        "scopes.toml: [[rule]] #2: unknown key 'colour'",
        "scopes.toml: [[rule]] #2: a rule that marks operations mutating must say 'why'",
    ]


def test_cache_policy_names_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "cache.toml"
    path.write_text(
        'default = "forever"\n[[rule]]\nnamespace = "slurm"\npath = "/x"\nmethods = ["GET"]\n',
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        load_cache_rules(path)
    assert caught.value.problems == (
        "cache.toml: top level: 'default' is 'forever', expected one of none, short, normal, long",
        "cache.toml: [[rule]] #1: missing 'policy'",
    )


def test_account_rules_first_match_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        """
detect = "account"

[[body]]
namespace = "slurm"
path = "/job/submit"
field = "job.account"
when_absent = "default_account"

[[body]]
field = "**.account"
form = "csv"
""",
        encoding="utf-8",
    )
    rules = load_account_rules(path)
    submit = rules.classify_field("slurm", ("job", "submit"), "POST", ("job", "account"))
    other = rules.classify_field("slurm", ("job", "{job_id}"), "POST", ("job", "account"))
    assert submit is not None
    assert other is not None
    assert (submit.when_absent, submit.form) == (WhenAbsent.DEFAULT_ACCOUNT, ValueForm.NAME)
    assert (other.when_absent, other.form) == (WhenAbsent.NOTHING, ValueForm.CSV)
    assert rules.classify_field("slurm", ("x",), "POST", ("name",)) is None

    path.write_text(
        """
detect = "account"

[[body]]
field = "meta.**"
account = false
form = "csv"

[[lookup]]
namespace = "slurm"
path = "/job/{job_id}"
methods = ["DELETE"]
entity = "job"
key = "header:job_id"
""",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        load_account_rules(path)
    assert caught.value.problems == (
        "accounts.toml: [[body]] #1: a rule saying a field is not an account must say 'why'",
        "accounts.toml: [[body]] #1: 'form' and 'when_absent' only apply to account fields",
        "accounts.toml: [[lookup]] #1: 'key' is 'header:job_id', expected path:NAME, "
        "query:NAME or body:FIELD",
    )


def _cache_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cache.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_cache_groups_and_invalidate_rules_load(tmp_path: Path) -> None:
    path = _cache_file(
        tmp_path,
        """
        default = "none"

        [[rule]]
        namespace = "slurm"
        path = "/jobs/**"
        methods = ["GET"]
        policy = "short"
        group = "jobs"

        [[rule]]
        namespace = "slurmdb"
        path = "/jobs"
        methods = ["GET"]
        policy = "normal"
        group = "db-jobs"

        [[rule]]
        namespace = "slurm"
        path = "/ping"
        methods = ["GET"]
        policy = "none"

        [[invalidate]]
        namespace = "slurm"
        path = "/job/submit"
        methods = ["POST"]
        groups = ["jobs", "db-jobs", "jobs"]
        why = "a new job shows in both job lists"

        [[invalidate]]
        namespace = "slurm"
        path = "/shutdown"
        methods = ["POST"]
        groups = []
        why = "nothing cached outlives it"
        """,
    )
    rules = load_cache_rules(path)
    assert [(rule.policy, rule.group) for rule in rules.rules] == [
        (CachePolicy.SHORT, "jobs"),
        (CachePolicy.NORMAL, "db-jobs"),
        (CachePolicy.NONE, ""),
    ]
    assert rules.groups == {"jobs", "db-jobs"}
    # sorted and without repeats, so the generated tables do not depend on how the file lists them
    assert [rule.groups for rule in rules.invalidations] == [("db-jobs", "jobs"), ()]
    (submit,) = rules.invalidating("slurm", ("job", "submit"), "POST")
    assert submit.origin == "cache.toml [[invalidate]] #1"
    assert rules.invalidating("slurm", ("job", "submit"), "GET") == []
    assert rules.invalidating("slurmdb", ("job", "submit"), "POST") == []


def test_cache_group_problems_name_the_table(tmp_path: Path) -> None:
    path = _cache_file(
        tmp_path,
        """
        default = "none"

        [[rule]]
        namespace = "slurm"
        path = "/jobs"
        methods = ["GET"]
        policy = "short"

        [[rule]]
        namespace = "slurm"
        path = "/ping"
        methods = ["GET"]
        policy = "none"
        group = "ping"

        [[rule]]
        namespace = "slurm"
        path = "/nodes"
        methods = ["GET"]
        policy = "short"
        group = "Nodes"

        [[rule]]
        namespace = "slurm"
        path = "/licenses"
        methods = ["GET"]
        policy = "short"
        group = 7

        [[rule]]
        namespace = "slurm"
        path = "/shares"
        methods = ["GET"]
        policy = "normal"
        group = "shares"

        [[rule]]
        namespace = "slurm"
        path = "/diag"
        methods = ["GET"]
        policy = "sometimes"
        group = "diag"
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_cache_rules(path)
    assert caught.value.problems == (
        "cache.toml: [[rule]] #1: missing 'group': every cached operation belongs to a cache group",
        "cache.toml: [[rule]] #2: policy 'none' caches nothing, so the rule takes no 'group'",
        "cache.toml: [[rule]] #3: 'group' is 'Nodes', expected a cache group name like 'jobs' "
        "([a-z][a-z0-9-]*)",
        "cache.toml: [[rule]] #4: 'group' is 7, expected a cache group name like 'jobs' "
        "([a-z][a-z0-9-]*)",
        # a policy that is not one says nothing about whether a group belongs: one problem only
        "cache.toml: [[rule]] #6: 'policy' is 'sometimes', expected one of none, short, normal, "
        "long",
    )


def test_invalidate_problems_name_the_table(tmp_path: Path) -> None:
    path = _cache_file(
        tmp_path,
        """
        default = "none"

        [[rule]]
        namespace = "slurm"
        path = "/jobs"
        methods = ["GET"]
        policy = "short"
        group = "jobs"

        [[invalidate]]
        namespace = "slurm"
        path = "/job/submit"
        methods = ["POST"]
        groups = ["jobs", "job"]

        [[invalidate]]
        namespace = "slurm"
        path = "/jobs"
        methods = ["DELETE"]
        groups = "jobs"

        [[invalidate]]
        namespace = "slurm"
        path = "/job/{job_id}"
        methods = ["POST"]
        groups = ["jobs", "Jobs!", 3]

        [[invalidate]]
        namespace = "slurm"
        path = "/reconfigure"
        methods = ["GET"]

        [[invalidate]]
        namespace = "slurm"
        path = "/shutdown"
        methods = ["POST"]
        groups = []

        [[invalidate]]
        path = "/nodes"
        groups = ["jobs"]
        policy = "short"
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_cache_rules(path)
    assert caught.value.problems == (
        "cache.toml: [[invalidate]] #1: group 'job' is not the 'group' of any [[rule]] or own "
        "endpoint",
        "cache.toml: [[invalidate]] #2: 'groups' must be a list of cache group names",
        "cache.toml: [[invalidate]] #3: 'groups' item is 'Jobs!', expected a cache group name "
        "like 'jobs' ([a-z][a-z0-9-]*)",
        "cache.toml: [[invalidate]] #3: 'groups' item is 3, expected a cache group name like "
        "'jobs' ([a-z][a-z0-9-]*)",
        "cache.toml: [[invalidate]] #4: missing 'groups'",
        "cache.toml: [[invalidate]] #5: a rule saying operations invalidate nothing must say 'why'",
        "cache.toml: [[invalidate]] #6: unknown key 'policy'",
        "cache.toml: [[invalidate]] #6: missing 'namespace'",
        "cache.toml: [[invalidate]] #6: missing 'methods'",
    )
