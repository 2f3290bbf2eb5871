# The documented entry points. `make demo` and `make test` work from a clean clone on a fresh
# Debian machine as root: they create .venv, install patchkit, and let `patchkit lab` install the
# Debian packages the lab needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PK := $(BIN)/patchkit
# The demo lab and the test lab have different names and subnets so they never touch each other.
DEMO_HOSTS ?= 3
DEMO_POLICY := policies/lab.yml
DEMO_INVENTORY := inventories/lab/hosts.yml
TEST_LAB := --name pktest --subnet 10.77.1.0/24
# Integration tests run in TEST_WORKERS pytest-xdist workers, a whole test file at a time, each
# worker on a lab of its own (pktest0 on 10.77.1.0/24, pktest1 on 10.77.11.0/24, …): most of a
# lab test's time is spent waiting for reboots and timeouts, so two labs share 2 cores well.
TEST_WORKERS ?= 2
LIFE_LAB := --name pklife --subnet 10.77.2.0/24
# The lab of the molecule scenarios (.config/molecule/config.yml names the same one).
MOLECULE_LAB := --name pkmol --subnet 10.77.30.0/24
# The long run of the edge fuzzing (make test runs a bounded one in tests/unit).
FUZZ_CASES ?= 5000
# Only the integration tests need root and the lab; CI runs everything.
PYTEST_ARGS ?=

.PHONY: help install demo test lint unit integration molecule fuzz lab-down clean
.DEFAULT_GOAL := help

help:
	@echo "make demo   set up, bring the lab up, assess, plan, approve and run a patch window"
	@echo "make test   set up, lint, type-check, run unit and integration tests on a lab"
	@echo "make lint   ruff, mypy, ansible-lint, syntax checks;  make unit   unit tests only"
	@echo "make molecule   the roles' molecule scenarios only (on their own lab)"
	@echo "make fuzz   $(FUZZ_CASES) hostile policies and command lines; prints the counts"
	@echo "make lab-down   tear the demo and test labs down"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "patchkit needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependencies change; the stamp keeps repeated runs fast.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PK) lab up --hosts $(DEMO_HOSTS)
	$(PK) lab check
	$(PK) policy check $(DEMO_POLICY)
	@echo "# hold back demo-svc 1.1, the update that breaks its health check (the tests run it)"
	$(PK) lab updates --withdraw demo-svc
	$(PK) assess -p $(DEMO_POLICY) -i $(DEMO_INVENTORY)
	@echo "# advisory feeds about the demo packages (made-up CVEs), as a daily cron job would fetch them"
	$(PK) lab feeds .patchkit/feeds
	$(PK) advisories import .patchkit/feeds/*
	@echo "# which hosts the known-exploited CVEs affect (exit 1: some are)"
	$(PK) audit --kev -p $(DEMO_POLICY) -i $(DEMO_INVENTORY) || [ $$? -eq 1 ]
	$(PK) plan -p $(DEMO_POLICY) -i $(DEMO_INVENTORY)
	$(PK) plan -p $(DEMO_POLICY) -i $(DEMO_INVENTORY) --format html -o .patchkit/plan.html
	plan=$$($(PK) plan -p $(DEMO_POLICY) -i $(DEMO_INVENTORY) --format json \
	    | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["id"])') && \
	  $(PK) approve $$plan --by demo-operator --reboots --comment "make demo" && \
	  $(PK) run $$plan -p $(DEMO_POLICY) -i $(DEMO_INVENTORY)
	$(PK) status
	$(PK) lab check
	@echo "# after the window: no host is affected by a known-exploited CVE any more (exit 0)"
	$(PK) audit --kev -p $(DEMO_POLICY) -i $(DEMO_INVENTORY)
	$(PK) report run --format html -o .patchkit/run.html
	$(PK) report compliance -p $(DEMO_POLICY) -i $(DEMO_INVENTORY) --format html -o .patchkit/compliance.html
	@echo "plan preview: .patchkit/plan.html; ledger: .patchkit/ledger.sqlite (patchkit status)"
	@echo "run report: $(CURDIR)/.patchkit/run.html; compliance: $(CURDIR)/.patchkit/compliance.html"

# ansible-lint and molecule run their ansible-playbook from PATH: the venv's bin comes first.
ANSIBLE_PATH := PATH=$(CURDIR)/$(BIN):$$PATH

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(ANSIBLE_PATH) $(BIN)/ansible-lint roles/ playbooks/ molecule/
	for playbook in playbooks/*.yml; do \
	  $(ANSIBLE_PATH) ANSIBLE_ROLES_PATH=roles $(BIN)/ansible-playbook --syntax-check \
	    -i localhost, $$playbook > /dev/null || exit 1; done

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The wheels an execution node is bootstrapped from (tests/integration/test_nodes_lab.py): fetched
# here, with the other dependencies, so that no test reaches a package index.
NODE_WHEELS := $(VENV)/node-wheels
$(NODE_WHEELS)/.done: $(VENV)/.installed
	$(PK) node wheels --python 3.11 --machine $$(uname -m) --dest $(NODE_WHEELS)
	touch $@

# The test labs are torn down by the fixtures; the trailing `lab down` also covers a pytest that
# was interrupted before its fixtures could finish.
integration: install $(NODE_WHEELS)/.done
	$(BIN)/pytest tests/integration -n $(TEST_WORKERS) --dist loadfile --durations=30 \
	  $(PYTEST_ARGS); rc=$$?; \
	  $(PK) lab $(TEST_LAB) down; $(PK) lab $(LIFE_LAB) down; \
	  $(PK) lab --name pktest0 --subnet 10.77.1.0/24 down; \
	  $(PK) lab --name pktest1 --subnet 10.77.11.0/24 down; \
	  $(PK) lab $(MOLECULE_LAB) down; exit $$rc

test: lint unit integration

lab-down: install
	$(PK) lab down
	$(PK) lab $(TEST_LAB) down
	$(PK) lab $(LIFE_LAB) down
	$(PK) lab --name pktest0 --subnet 10.77.1.0/24 down
	$(PK) lab --name pktest1 --subnet 10.77.11.0/24 down
	$(PK) lab $(MOLECULE_LAB) down

# The roles' molecule scenarios alone (make test runs them too, as tests/integration/test_molecule.py).
molecule: install
	$(ANSIBLE_PATH) $(BIN)/molecule test --all

fuzz: install
	$(BIN)/python benchmarks/fuzz_edges.py --cases $(FUZZ_CASES)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
