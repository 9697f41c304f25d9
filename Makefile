# scopeflow developer tasks. Every target creates .venv itself on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# the MPI extra (mpi4py) needs an MPI compiler: add it when one is installed
EXTRAS ?= dev$(shell command -v mpicc >/dev/null 2>&1 && echo ,mpi)
PYTEST_ARGS ?=

.PHONY: venv demo test lint unit bench clean help

help:
	@echo "make demo   - create .venv, make demo data, run the example pipeline, print results"
	@echo "make test   - lint (ruff, mypy, import-linter) and the whole test suite"
	@echo "make lint   - ruff, mypy, import-linter only"
	@echo "make bench  - benchmarks (results in benchmarks/results/, figures in docs/benchmarks.md)"

$(VENV)/.installed-$(subst ,,$(EXTRAS)): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.4" \
	  || echo "uv not available; falling back to pip"
	@# --compile-bytecode: uv does not write .pyc files by default, and where
	@# PYTHONDONTWRITEBYTECODE is set every process would compile every module it imports
	@# (seconds per Dask worker; pip compiles at install time)
	@if [ -x $(BIN)/uv ]; then \
	  $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[$(EXTRAS)]"; \
	else \
	  $(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"; \
	fi
	@$(BIN)/python -m compileall -q src
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(VENV)/.installed-$(subst ,,$(EXTRAS))

demo: venv
	$(BIN)/scopeflow demo --workdir scopeflow-demo

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test: lint
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) scopeflow-demo .pytest_cache .mypy_cache .ruff_cache
