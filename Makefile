# Two commands matter: `make run` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: run test test-unit test-pages test-e2e test-integration bench lint system-deps clean standin

$(PY):
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

## Start the dashboard on http://127.0.0.1:$(PORT) (open local mode unless a JWT key is configured).
run: $(VENV)/.runtime-installed
	$(PY) serve.py --server.port $(PORT) --server.address $${DASHBOARD_BIND:-127.0.0.1}

## System packages the tests use: Debian's Chromium (e2e), Prometheus and PostgreSQL (integration; the job store's
## tests run on SQLite and on a throwaway PostgreSQL cluster, started as `nobody` when run as root),
## docker-compose (validates docker-compose.yml; no engine needed).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing fonts-dejavu-core >/dev/null; \
	fi

## Every test tier: unit, page (AppTest), integration (real Prometheus and PostgreSQL), end to end (Playwright +
## Chromium).
test: $(VENV)/.dev-installed system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

test-unit: $(VENV)/.dev-installed
	$(PY) -m pytest tests/unit

test-pages: $(VENV)/.dev-installed
	$(PY) -m pytest tests/pages

test-e2e: $(VENV)/.dev-installed system-deps
	$(PY) -m pytest tests/e2e

test-integration: $(VENV)/.dev-installed system-deps
	$(PY) -m pytest tests/integration

## Performance ratios measured in one run against a baseline (no timing assertions in tests).
bench: $(VENV)/.dev-installed system-deps
	$(PY) -m bench

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

## A loopback Ollama stand-in, for trying the dashboard without a real Ollama.
standin: $(VENV)/.runtime-installed
	$(PY) -m tests.standin --port $${STANDIN_PORT:-11434}

clean:
	rm -rf $(VENV) .pytest_cache artifacts
