# The two commands of the README: `make run` (the product, offline) and
# `make test` (every test). Both do all set-up first, idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# This machine's pip config names local wheel folders that may not exist;
# drop pip's warnings about them so real errors stay visible.
PIP_QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PYTHON ?= python3
# apt-get runs unattended (CI has no stdin).
export DEBIAN_FRONTEND := noninteractive
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo setup node-tools xvfb cli-tools run test lint typecheck format clean

# Node.js packages from committed lock files: mqtt.js for tests/conformance,
# the AWS CDK CLI for infra/ (iotnotify deploy/synth, tests/infra).
NODE_CONFORMANCE := tests/conformance/node
NODE_STAMP := $(NODE_CONFORMANCE)/node_modules/.installed
CDK_STAMP := infra/node_modules/.installed
NPM_CI := npm ci --no-audit --no-fund --loglevel=error

setup: $(STAMP) $(NODE_STAMP) $(CDK_STAMP) xvfb cli-tools

# Debian's nodejs when the machine has none (skipped when npm is present).
node-tools:
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm; }

# A virtual screen for the tray app's test (pystray's xorg backend needs no GTK),
# and dbus-daemon: bench/client_idle.py measures the tray after a pop-up on a
# private session bus.
xvfb:
	@command -v Xvfb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq xvfb; }
	@command -v dbus-daemon >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq dbus-daemon; }

# curl and jq: the README's `POST /notify/key` line uses them, and a test runs it.
cli-tools:
	@{ command -v curl && command -v jq; } >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl jq; }

$(NODE_STAMP): $(NODE_CONFORMANCE)/package-lock.json | node-tools
	$(NPM_CI) --prefix $(NODE_CONFORMANCE)
	@touch $@

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (pip install -e '.[dev]')"
	@$(BIN)/python -m pip install --quiet --upgrade pip $(PIP_QUIET)
	@$(BIN)/python -m pip install --quiet -e '.[dev]' $(PIP_QUIET)
	@touch $(STAMP)

$(CDK_STAMP): infra/package.json infra/package-lock.json | node-tools
	$(NPM_CI) --prefix infra
	@touch $@

# --- web page and its browser (web/, tests/e2e/) --------------------------------
# `iotnotify local` serves web/dist; the e2e tests drive it in Debian's
# Chromium (Playwright cannot download its own browser here).
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get
WEB_DEPS := web/node_modules/.package-lock.json
WEB_BUILT := web/dist/.built
CHROMIUM_STAMP := $(VENV)/.chromium

setup: $(WEB_BUILT) $(CHROMIUM_STAMP)

$(WEB_DEPS): web/package.json web/package-lock.json | node-tools
	$(NPM_CI) --prefix web
	@touch $@

$(WEB_BUILT): $(WEB_DEPS) web/build.mjs $(wildcard web/src/*)
	npm run build --prefix web
	@touch $@

$(CHROMIUM_STAMP): | $(STAMP)
	@command -v chromium >/dev/null || { $(APT) update -qq && $(APT) install -y -qq chromium; }
	@touch $@
# --- end web ----------------------------------------------------------------------

# Options for iotnotify local, e.g. `make run ARGS=--fresh` or `make run ARGS="--port 0"`.
ARGS ?=
run: setup
	$(BIN)/iotnotify local $(ARGS)

# The offline stack and the example game (examples/turns) beside it, with a
# game for alice and bob; Ctrl-C stops both. The trap's commands end with
# `|| true`: under -e a `kill` of a stack that had already stopped made
# Ctrl-C end in "make: *** [demo] Error 1" (a failing game still fails).
demo: setup
	@$(BIN)/iotnotify local & stack=$$!; \
	trap 'kill $$stack 2>/dev/null || true; wait $$stack || true' EXIT INT TERM; \
	$(BIN)/python examples/turns/turns.py --wait --demo alice,bob

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy examples/turns/turns.py bench/turn_latency.py tests/local_process.py

test: setup lint typecheck
	$(BIN)/python -m pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
