"""Loading the policy files: the shipped ones are valid, broken ones report every problem."""

from __future__ import annotations

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
    assert load_cache_rules().default is CachePolicy.NONE
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
