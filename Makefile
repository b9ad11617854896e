# slurmgate: every entry point a developer, an administrator or CI uses.
# `make test` on a fresh Debian machine installs what it needs (apt packages, the virtualenv, the lab).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
LAB := $(PYTHON) -m tests.lab
LAB_DIR ?= /var/lib/slurmgate-lab
export SLURMGATE_LAB_DIR := $(LAB_DIR)
# Debian packages the project needs on the host (the lab's own packages live in its chroots);
# wrk and nginx are the benchmarks' load generator and the caching proxy slurmgate is measured against.
APT_PACKAGES := debootstrap munge redis-server wrk nginx
# make specs SLURMRESTD=/usr/sbin/slurmrestd uses a site's binary instead of the lab's chroots.
SLURMRESTD ?=
# Arguments for pytest, e.g. make test PYTEST_ARGS='-k routes -x'.
PYTEST_ARGS ?=

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BUILD)/apt.stamp: Makefile
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	  | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi
	@touch $@

.PHONY: apt
apt: $(BUILD)/apt.stamp  ## install the Debian packages the project needs (as root)

$(VENV)/.stamp: pyproject.toml constraints.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	@touch $@

# The folders and the packages they map to, as slurmgate.NAME=FOLDER words: pyproject's
# [tool.setuptools.package-dir] is the one list (read by tests/layout.py, standard library only).
PACKAGE_DIRS = $(shell $(PYTHON) -m tests.layout)
PACKAGES = $(foreach p,$(PACKAGE_DIRS),$(firstword $(subst =, ,$(p))))

# mypy cannot follow setuptools' editable import hook, so it reads a link tree with the import
# layout instead: build/typing/slurmgate/<name> -> <folder>. Rebuilt whenever pyproject.toml
# changes, so a folder added there (or removed) is seen by mypy.
$(BUILD)/typing/.stamp: pyproject.toml tests/layout.py
	@rm -rf $(BUILD)/typing
	@set -- $(PACKAGE_DIRS); [ $$# -gt 0 ] || { echo "no package-dir in pyproject.toml" >&2; exit 1; }; \
	for pair; do \
	  link=$(BUILD)/typing/$$(echo "$${pair%%=*}" | tr . /); \
	  mkdir -p "$$(dirname "$$link")"; ln -sfnr "$${pair#*=}" "$$link"; \
	done
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp $(BUILD)/typing/.stamp  ## create the virtualenv with every dependency

.PHONY: lock
lock: venv  ## refresh constraints.txt from the virtualenv
	@{ echo "# Pinned versions for reproducible installs (make venv uses: pip install -c constraints.txt). Refresh with 'make lock'."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^slurmgate'; } > constraints.txt

.PHONY: lab
lab: apt  ## bring the Slurm lab up (trixie: Slurm 24.11, forky: Slurm 26.05); idempotent
	$(LAB) up

.PHONY: lab-down
lab-down:  ## stop the daemons the lab started and release its mounts (chroots are kept)
	$(LAB) down

.PHONY: lab-status
lab-status:  ## show the lab's daemons
	$(LAB) status

.PHONY: lab-destroy
lab-destroy:  ## stop the lab and delete its chroots
	$(LAB) destroy

.PHONY: specs
specs: venv  ## regenerate specs/ with slurmrestd --generate-openapi-spec (SLURMRESTD=... for a site binary)
ifeq ($(SLURMRESTD),)
	$(MAKE) apt
	$(LAB) chroot
	$(PY) -m slurmgate.codegen.specs --out specs \
	  --lab-root $(LAB_DIR)/trixie/root --lab-root $(LAB_DIR)/forky/root
else
	$(PY) -m slurmgate.codegen.specs --out specs --slurmrestd $(SLURMRESTD)
endif

.PHONY: regen
regen: venv  ## regenerate generated/ from specs/ and policies/
	$(PY) -m slurmgate.codegen regen

.PHONY: check-generated
check-generated: venv  ## fail when generated/ does not match specs/ + policies/
	$(PY) -m slurmgate.codegen regen --check

.PHONY: clients
clients: venv  ## build a client package per API version: sources in build/clients/, wheels and sdists in dist/
	$(PY) -m slurmgate.codegen clients

.PHONY: publish
publish: venv  ## upload dist/'s client packages with twine (TWINE_REPOSITORY_URL or TWINE_REPOSITORY + ~/.pypirc)
	$(PY) -m slurmgate.codegen publish

.PHONY: lint
lint: venv  ## ruff and mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(addprefix -p ,$(PACKAGES))
	$(VENV)/bin/mypy tests

.PHONY: test
test: venv lab lint check-generated  ## everything CI runs: lab, lint, generated check, pytest
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Only the virtualenv: no root, no apt packages beyond what the machine has, no lab. redis-server
# is used when installed (tests/redis_server.py fails the test, loudly, when it is not).
.PHONY: unit
unit: venv  ## the tests that need no lab and no root (pytest -m "not lab"), in under 3 minutes
	$(VENV)/bin/pytest -m "not lab" $(PYTEST_ARGS)

.PHONY: bench
bench: venv lab  ## benchmarks (~15 min, not in make test): tests/bench/results/<date>.md and README's table
	$(PY) -m tests.bench

.PHONY: soak
soak: venv lab  ## 10-minute steady load and the long fuzz (~25 min, not in make test): build/soak/report.md
	$(PY) -m tests.soak

.PHONY: demo
demo: venv lab  ## the gateway in front of the lab with a demo token, in the foreground (Ctrl-C stops it)
	@$(PY) -m tests.lab.demo
