# raftkv — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 20000
PYTEST_ARGS ?=

.PHONY: install test lint sim demo bench bench-core crds clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: install
	$(BIN)/lint-imports --config pyproject.toml
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check node operator tests
	$(BIN)/mypy node/raftkv operator/raftkv_operator
	$(BIN)/lint-imports --config pyproject.toml

# Deterministic cluster simulation over many seeds (make sim SEEDS=20000).
sim: install
	$(BIN)/python -m tests.sim.run --seeds $(SEEDS)

# Proposals per second through an in-memory 3-node cluster of cores (no IO).
bench-core: install
	$(BIN)/python -m tests.sim.bench_core

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate crds/*.yaml from the pydantic models (a unit test fails when they drift).
crds: install
	$(BIN)/python -m raftkv_operator.crdgen crds/
