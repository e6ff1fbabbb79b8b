# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit services bench bench-quick chaos schema docker-check clean

# The dev venv: the service (editable), the dev tools and the bench extra (loadtest/'s
# packages; loadtest/ itself is imported from the checkout, never installed). The Docker
# image installs the service alone.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

## run: install, then start the service on its embedded defaults (no RabbitMQ/Redis/S3 needed)
run: $(STAMP)
	$(PY) -m cluster run

## services: make sure the servers and tools the tests need are there (RabbitMQ, Redis,
## docker-compose for checking docker/compose.yaml)
services:
	bash .ci/services.sh

## lint: ruff, formatting, mypy strict, import-linter layer contracts, event schema current,
## hadolint
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports
	$(PY) -m cluster schema check
	$(VENV)/bin/hadolint docker/Dockerfile

## test: install, start the services, lint, run the whole suite
test: $(STAMP) services lint
	$(VENV)/bin/pytest

## unit: the fast suites only (no sockets, no Ray)
unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit tests/contract -m 'not redis and not rabbitmq'

## chaos: the chaos suite's long run (more load, longer faults; `make test` runs the short
## one) against the real service on its own Redis and RabbitMQ node; writes
## var/chaos/chaos-long.json and .md (the table in docs/reliability.md)
chaos: $(STAMP) services
	WA_CHAOS=long $(VENV)/bin/pytest tests/chaos -m chaos
	cat var/chaos/chaos-long.md

## bench: the three-way throughput/latency comparison (see docs/benchmarks.md)
bench: $(STAMP) services
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m loadtest bench
	$(PY) -m tests.bench.redis_waitaof  # what WAITAOF costs an append (docs/redis.md)
	$(PY) -m tests.bench.shard_cpu  # shard CPU per event by batch size (docs/benchmarks.md)
	$(PY) -m tests.bench.conversation_memory  # bytes per resident conversation (docs/conversations.md)

## bench-quick: a short bench for development (issue 14): the naive bridge and this
## service, 10 s of wrk and 20 s of open loop at 500 req/s, printed only (docs untouched)
bench-quick: $(STAMP) services
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m loadtest bench --systems b,c --rate 500 --duration 20 --wrk-duration 10 --no-doc

## docker-check: hadolint on the Dockerfile, `docker-compose config` on the stack (where
## docker-compose is installed; `make services` installs it)
docker-check: $(STAMP)
	$(VENV)/bin/hadolint docker/Dockerfile
	if command -v docker-compose >/dev/null; then \
	  WA_APP_SECRET=check WA_VERIFY_TOKEN=check docker-compose -f docker/compose.yaml config -q; \
	fi

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
