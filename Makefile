# Two commands: `make run` (the todo example on :3000) and `make test` (the whole suite, as CI runs it).
# Everything the tests need is installed here: Python deps in .venv, the npm Motia clients.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := tests/compat/node_modules/.installed
PORT ?= 3000

.PHONY: setup run test lint bench clean

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

$(NODE_STAMP): tests/compat/package.json tests/compat/package-lock.json
	cd tests/compat && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

run: $(PY_STAMP)
	cd examples/todo && ../../$(BIN)/surge dev --port $(PORT)

test: setup
	$(BIN)/pytest

lint: $(PY_STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) tests/compat/node_modules .pytest_cache
