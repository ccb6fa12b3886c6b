# The two commands: `make run` serves http://127.0.0.1:3000/healthz, `make test` runs every check.
SHELL := /bin/bash
# Python 3.13 from PATH (pyenv's shim, the system's, a CI image's); PYTHON=... to choose another.
PYTHON ?= $(shell command -v python3.13)
NO_PYTHON := Python 3.13 not found on PATH: install it or pass PYTHON=/path/to/python3.13
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONCURRENCY ?= 4
# Set (e.g. MAX_CONCURRENCY=4) to run as Lambda Managed Instances: N workers per environment.
MAX_CONCURRENCY ?=
PORT ?= 3000
EVENT ?= events/rest-get.json
ENV_VARS ?=
SOAK_SECONDS ?= 60

.PHONY: venv prereqs go-tools lock run invoke stack test lint typecheck validate bench bench-scale soak clean

CHECKOV_VENV := .tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

venv: $(STAMP) $(CHECKOV)

# requirements-dev.lock pins everything requirements-dev.txt pulls in (`make lock` renews it).
$(STAMP): requirements-dev.lock
	$(if $(wildcard $(BIN)/python)$(PYTHON),,$(error $(NO_PYTHON)))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	# Compiled to bytecode as pip (and the image) would: the first cold start must not compile.
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements-dev.lock
	touch $@

# checkov's pins conflict with aws-sam-cli's: it gets a venv of its own (tests/deploy use it).
$(CHECKOV): | $(STAMP)
	$(BIN)/python -m venv $(CHECKOV_VENV)
	$(BIN)/uv pip install --quiet --python $(CHECKOV_VENV)/bin/python checkov==3.3.30

# The Debian packages whose binaries the tests start (prometheus-pushgateway, prometheus,
# promtool): installed when missing if run as root with apt-get, else one line says what to install.
prereqs:
	@$(SHELL) scripts/prereqs.sh

# The Go programs the tests start, built from their manifests in tools/ (the project's
# OpenTelemetry Collector, the Pushgateway) into .tools/go/, rebuilt when a manifest changes;
# without Go, one line says what to install.
go-tools:
	@$(SHELL) scripts/build-go-tools.sh

# Re-pin after changing a requirements file: the image's lock (hashes, Lambda's platform) and
# the development lock.
lock: venv
	$(BIN)/uv pip compile --quiet --generate-hashes --python-platform x86_64-manylinux_2_28 \
		--python-version 3.13 --custom-compile-command "make lock" \
		--output-file layers/observability/requirements.lock \
		layers/observability/requirements.txt functions/healthz/requirements.txt
	$(BIN)/uv pip compile --quiet --python-version 3.13 --custom-compile-command "make lock" \
		--output-file requirements-dev.lock requirements-dev.txt

run: venv
	$(BIN)/python -m localrt start-api --port $(PORT) --concurrency $(CONCURRENCY) $(if $(MAX_CONCURRENCY),--max-concurrency $(MAX_CONCURRENCY)) $(if $(ENV_VARS),--env-vars $(ENV_VARS))

invoke: venv
	$(BIN)/python -m localrt invoke -e $(EVENT) $(if $(ENV_VARS),--env-vars $(ENV_VARS))

# A real Pushgateway, Prometheus and OpenTelemetry Collector, on loopback ports; Ctrl-C stops them.
stack: prereqs go-tools venv
	$(BIN)/python -m stack up

# Peers side by side under localrt; writes bench/results/latest.{md,png,json}. Not part of `make test`.
bench: prereqs go-tools venv
	$(BIN)/python -m bench
	# The export policy: billed time, PUTs and freshness by interval (bench/results/policy.md).
	$(BIN)/python -m bench.policy

# How far one Pushgateway carries (1,000 to 10,000 groups), about 5 minutes; writes
# bench/results/scale.{md,json}. Not part of `make test`.
bench-scale: prereqs go-tools venv
	$(BIN)/python -m bench.scale

# Bounded load (SOAK_SECONDS) through localrt at CONCURRENCY against the real stack; exits 1 on
# any 5xx, lost count, memory growth or descriptor leak. A 10 s version runs in `make test`.
soak: prereqs go-tools venv
	$(BIN)/python -m soak --seconds $(SOAK_SECONDS) --concurrency $(CONCURRENCY)

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy layers/observability/python functions/healthz localrt stack tests bench soak
	# A second run: both functions have a module named app.
	$(BIN)/mypy functions/pushgateway_janitor

validate: venv
	$(BIN)/sam validate --lint

test: prereqs go-tools venv lint typecheck
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
