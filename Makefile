# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-sqlite test-postgres system-deps lint bench clean messages

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"

$(VENV)/.example: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e . --group example
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e . --group dev
	touch $@

# The app's translations: the .po files are the source (committed), the .mo files are
# compiled from them here (never committed), again whenever a .po is newer than its .mo.
# msgfmt comes with GNU gettext (Debian: gettext, see .ci/system-deps).
CATALOGUES := $(patsubst %.po,%.mo,$(wildcard imagen_assets/locale/*/LC_MESSAGES/*.po))

%.mo: %.po
	@command -v msgfmt >/dev/null || { echo "msgfmt is missing: install GNU gettext (Debian: apt-get install gettext)" >&2; exit 1; }
	msgfmt --check-format -o $@ $<

## make messages: the zh_Hans catalogue brought up to date with the code's strings (then
## translate what is new: the test suite fails on an empty or fuzzy msgstr).
messages: $(VENV)/.test
	cd imagen_assets && env -u DJANGO_SETTINGS_MODULE $(abspath $(PY)) -m django makemessages \
	  --locale zh_Hans --add-location file

## make demo: the example site with Redis, a worker and the sandbox provider.
demo: $(VENV)/.example $(CATALOGUES)
	$(PY) -m campaigns.demo

## make test: lint and types, then the whole suite on SQLite and then on PostgreSQL.
test: system-deps $(VENV)/.test
	$(MAKE) --no-print-directory lint test-sqlite test-postgres

test-sqlite: $(VENV)/.test $(CATALOGUES)
	$(PY) -m pytest -m "not postgres"

test-postgres: $(VENV)/.test $(CATALOGUES)
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
