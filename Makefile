# Every target installs what it needs itself: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
# The benchmark's Quix Streams peer has a venv of its own: quixstreams pins an older
# confluent-kafka and pydantic than the connector's (pyproject's `quix` extra).
QUIX_VENV ?= .venv-quix
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 3

.PHONY: demo test lint unit integration chart bench bench-smoke clean system-deps

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(QUIX_VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q --upgrade pip
	$(QUIX_VENV)/bin/python -m pip install -q -e '.[quix]'
	touch $@

# Debian packages the tests use (promtool and prometheus); root on these machines.
system-deps:
	@command -v promtool >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

demo: $(VENV)/.base
	$(VENV)/bin/gameball-connector demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check connector tests bench
	$(VENV)/bin/mypy connector
	$(VENV)/bin/lint-imports

test: $(VENV)/.dev $(QUIX_VENV)/.done system-deps lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup --timeout 300 tests

unit: $(VENV)/.dev system-deps
	$(VENV)/bin/pytest tests/unit

integration: $(VENV)/.dev $(QUIX_VENV)/.done system-deps
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup --timeout 300 tests/integration

chart: $(VENV)/.dev
	$(VENV)/bin/pytest tests/chart

bench: $(VENV)/.dev $(QUIX_VENV)/.done
	$(PY) -m bench.run --quix-python $(QUIX_VENV)/bin/python

bench-smoke: $(VENV)/.dev $(QUIX_VENV)/.done
	$(PY) -m bench.run --smoke --quix-python $(QUIX_VENV)/bin/python --out "$$(mktemp -d)"

clean:
	rm -rf $(VENV) $(QUIX_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
