# The two commands of the README: `make run` (the product, offline) and
# `make test` (every test). Both do all set-up first, idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# This machine's pip config names local wheel folders that may not exist;
# drop pip's warnings about them so real errors stay visible.
PIP_QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint typecheck format clean

# mqtt.js for tests/conformance (npm ci from the committed lock file).
NODE_CONFORMANCE := tests/conformance/node
NODE_STAMP := $(NODE_CONFORMANCE)/node_modules/.installed

setup: $(STAMP) $(NODE_STAMP)

$(NODE_STAMP): $(NODE_CONFORMANCE)/package-lock.json
	npm ci --prefix $(NODE_CONFORMANCE) --no-audit --no-fund
	@touch $(NODE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip $(PIP_QUIET)
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(PIP_QUIET)
	@touch $(STAMP)

run: setup
	$(BIN)/iotnotify local

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
