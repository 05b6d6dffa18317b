# Two commands do everything on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed-stamp

.PHONY: help setup redis-server fonts chromium wrk run test check format clean bench bench-quick profile instructions soak contract contract-drift contract-real

$(STAMP): pyproject.toml
	@# Debian's own python3 needs python3-venv for ensurepip; install it when root and missing.
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && rm -rf $(VENV) && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	  $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Every target with what it does (its ## comment in this Makefile).
help:
	@awk '/^## /{doc = doc (doc ? " " : "") substr($$0, 4); next} \
	  /^[a-z][a-z-]*:/ && doc {sub(/:.*/, ""); printf "%-15s %s\n", $$0, doc} {doc = ""}' $(firstword $(MAKEFILE_LIST))

## The venv with the package and its dev tools, and what the tests need from Debian: Redis,
## fonts, chromium, wrk (each installed with apt-get when root and missing).
setup: $(STAMP) redis-server fonts chromium wrk

## wrk, for tests/test_bench_harness.py and make bench (Debian's package).
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing wrk (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "wrk is missing and only root can apt-get it: install it, or the benchmark harness tests fail" >&2; \
	  fi; }

## A real Redis for tests/test_redis_store.py and tests/test_scaling.py (Debian's package).
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing and only root can apt-get it: install it, or the Redis tests fail" >&2; \
	  fi; }

## Fonts for Chinese, Japanese, Korean and emoji prompts (Debian's packages named in
## emulator/data/fonts.toml with setup = true; found by path, fontconfig is not needed).
fonts: $(STAMP)
	@missing="$$($(BIN)/python -m emulator.pictures.fonts --missing)"; \
	test -z "$$missing" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "fonts missing ($$missing) and only root can apt-get them: install them, or prompts" \
	      "in those scripts show code points and tests/test_fonts.py fails" >&2; \
	  fi; }

## Debian's chromium for the dashboard's browser tests (tests/test_ui_browser.py); they fail,
## never skip, without it. Playwright drives it by path: `playwright install` is never run.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing and only root can apt-get it: install it, or the browser tests fail" >&2; \
	  fi; }

## Start the emulator on http://$(HOST):$(PORT) with the embedded defaults (no Redis needed).
run: $(STAMP)
	$(BIN)/python -m emulator serve --host $(HOST) --port $(PORT)

## The whole test suite (two processes: this machine has two cores).
test: setup
	$(BIN)/python -m pytest -q -n 2

## Lint, format check, strict typing, and the layers (import-linter: docs/architecture.md).
check: setup
	$(BIN)/ruff check emulator tests benchmarks
	@# docs/ and README.md too: their Python examples run as tests (tests/test_docs.py).
	$(BIN)/ruff format --check emulator tests benchmarks docs README.md
	$(BIN)/mypy emulator
	$(BIN)/lint-imports

SOAK_SECONDS ?= 120
## Load without loss: concurrent clients under a fault plan (SOAK_SECONDS, default 120).
soak: setup
	$(BIN)/python benchmarks/soak.py --seconds $(SOAK_SECONDS)

## Benchmarks against Prism, WireMock (journal on) and a bare Starlette app (installs wrk, Prism,
## WireMock itself): each server warmed up >= 5 s per workload, runs of 5 s, the performance
## issue's ratios checked (PASS/MISS), then fixtures, memory, rendering, workers on Redis, what
## one Redis carries, the dashboard. Writes benchmarks/results/latest.{json,md,png}; ~19 min.
bench: setup
	$(BIN)/python -m benchmarks

## The same, short (1 s warm-ups, one 2 s run per cell): under 3 min, labelled QUICK, indicative.
bench-quick: setup
	$(BIN)/python -m benchmarks --quick

## Where a poll's and a submission's CPU time goes, ours against the ceiling's: py-spy flame
## graphs into docs/profile-*.svg (committed: docs/profile.md reads them) and the tables into
## benchmarks/results/profile.{json,md}; about 3 minutes.
profile: setup
	$(BIN)/python -m benchmarks.profiling

## Instructions per submission and per poll, in process, under valgrind (docs/profile.md):
## a paired measure the machine's load cannot move; SRC=../other measures another checkout.
instructions: setup
	@command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; } || true
	$(BIN)/python -m benchmarks.instructions $(if $(SRC),--src $(SRC))

## The OpenAPI contract against a freshly started emulator, in both profiles (docs/contract.md):
## the careful one a user runs against the paid service, then --full. Tasks run at 1/20 of their
## real duration. The emulator gets a free loopback port and is stopped by its PID.
contract: setup
	@port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	EMULATOR_API_KEYS=sk-contract,sk-contract-2 $(BIN)/python -m emulator serve --host 127.0.0.1 \
		--port $$port --seed 1 --time-scale 0.05 --log-level warning & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	common="--base-url http://127.0.0.1:$$port --api-key sk-contract --second-api-key sk-contract-2 --poll-interval 0.2"; \
	$(BIN)/python -m emulator conform $$common --wait 30 --allow-generation --max-examples 10 \
		--report reports/contract-careful; careful=$$?; \
	$(BIN)/python -m emulator conform $$common --full --report reports/contract-full; full=$$?; \
	test $$careful = 0 && test $$full = 0

## conform --full against each of the deviating services of tests/drifts.py (make test runs the
## careful profile against them); a few minutes on two cores.
contract-drift: setup
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider tests/drift_full.py

## The contract against the real service (IMAGE_API_BASE_URL, IMAGE_API_KEY): safe defaults,
## GET only; CONFORM_ARGS=--allow-generation also submits (a few cheap, billable tasks).
contract-real: setup
	$(BIN)/python -m emulator conform --report reports/contract-real $(CONFORM_ARGS)

## Fix what ruff can and format the code, docs/ and README.md (their Python blocks).
format: setup
	$(BIN)/ruff check --fix emulator tests benchmarks
	$(BIN)/ruff format emulator tests benchmarks docs README.md

## Remove the venv, the tools' caches (lint-imports' too) and build output; keeps reports/ and
## benchmarks/results/ (what a run measured) and every tracked file.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .schemathesis .mypy_cache .ruff_cache \
	  .import_linter_cache build *.egg-info
