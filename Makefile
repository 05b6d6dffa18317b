# Two commands do everything on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test check format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Start the emulator on http://$(HOST):$(PORT) with the embedded defaults.
run: setup
	$(BIN)/python -m emulator serve --host $(HOST) --port $(PORT)

## The whole test suite (two processes: this machine has two cores).
test: setup
	$(BIN)/python -m pytest -q -n 2

## Lint, format check and strict typing.
check: setup
	$(BIN)/ruff check emulator tests benchmarks
	$(BIN)/ruff format --check emulator tests benchmarks
	$(BIN)/mypy emulator

format: setup
	$(BIN)/ruff check --fix emulator tests benchmarks
	$(BIN)/ruff format emulator tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .schemathesis .mypy_cache .ruff_cache build *.egg-info
