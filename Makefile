# The two commands of the README: `make run` (the product, offline) and
# `make test` (every test). Both do all set-up first, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint typecheck format clean

# The AWS CDK CLI for infra/ (iotnotify deploy/synth, tests/infra). Skipped
# with a note where npm is missing: only deploying and one infra test need it.
CDK_STAMP := infra/node_modules/.installed

setup: $(STAMP) $(CDK_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(CDK_STAMP): infra/package.json infra/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix infra --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: skipping the AWS CDK CLI (infra/node_modules)"; \
	fi

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
