# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-sqlite test-postgres system-deps lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"

$(VENV)/.example: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e . --group example
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e . --group dev
	touch $@

## make demo: the example site with Redis, a worker and the sandbox provider.
demo: $(VENV)/.example
	$(PY) -m campaigns.demo

## make test: lint and types, then the whole suite on SQLite and then on PostgreSQL.
test: system-deps $(VENV)/.test
	$(MAKE) --no-print-directory lint test-sqlite test-postgres

test-sqlite: $(VENV)/.test
	$(PY) -m pytest -m "not postgres"

test-postgres: $(VENV)/.test
	$(PY) -m campaigns.stack postgres -- $(PY) -m pytest -m "integration or postgres"

## Debian packages the integration tests use (installed only if missing, needs root).
system-deps:
	bash .ci/system-deps

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy imagen_assets campaigns benchmarks

bench: $(VENV)/.test
	$(PY) -m benchmarks

clean:
	rm -rf .run .pytest_cache .ruff_cache .mypy_cache
