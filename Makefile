# The documented entry points. `make demo` and `make test` work from a clean clone on a fresh
# Debian machine as root: they create .venv, install patchkit, and let `patchkit lab` install the
# Debian packages the lab needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PK := $(BIN)/patchkit
# The demo lab and the test lab have different names and subnets so they never touch each other.
DEMO_HOSTS ?= 3
TEST_LAB := --name pktest --subnet 10.77.1.0/24
LIFE_LAB := --name pklife --subnet 10.77.2.0/24
# Only the integration tests need root and the lab; CI runs everything.
PYTEST_ARGS ?=

.PHONY: help install demo test lint unit integration lab-down clean
.DEFAULT_GOAL := help

help:
	@echo "make demo   set up, bring the lab up, assess its hosts and preview a patch plan"
	@echo "make test   set up, lint, type-check, run unit and integration tests on a lab"
	@echo "make lint   ruff + mypy only;  make unit   unit tests only (no root, no lab)"
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
	$(PK) policy check policies/lab.yml
	$(PK) assess -p policies/lab.yml -i inventories/lab/hosts.yml
	$(PK) plan -p policies/lab.yml -i inventories/lab/hosts.yml
	$(PK) plan -p policies/lab.yml -i inventories/lab/hosts.yml --format html -o .patchkit/plan.html

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The test labs are torn down by the fixtures; the trailing `lab down` also covers a pytest that
# was interrupted before its fixtures could finish.
integration: install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS); rc=$$?; \
	  $(PK) lab $(TEST_LAB) down; $(PK) lab $(LIFE_LAB) down; exit $$rc

test: lint unit integration

lab-down: install
	$(PK) lab down
	$(PK) lab $(TEST_LAB) down
	$(PK) lab $(LIFE_LAB) down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
