# Two commands matter: `make run` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: run demo test test-unit test-pages test-e2e test-integration test-image check-rules wheels bench lint system-deps clean standin

# The wheelhouse an offline image build installs from: wheels for the image's Python and glibc, not this machine's.
# Defaults: CPython 3.11 on glibc 2.36 (Debian 12, as python:3.11-slim and the test base); any manylinux wheel
# whose glibc is at most that one.
WHEELS_PYTHON ?= 3.11
WHEELS_GLIBC_MINOR ?= 36
WHEELS_ARCH ?= $(shell uname -m)
WHEELS_PLATFORMS := --platform manylinux2014_$(WHEELS_ARCH) \
	$(foreach minor,$(shell seq 17 $(WHEELS_GLIBC_MINOR)),--platform manylinux_2_$(minor)_$(WHEELS_ARCH))

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

## A first look without Ollama: a stand-in Ollama with demo models (French answers, a thinking and a vision
## model, a slow 7B, a 20-second pull) on 127.0.0.1:$(DEMO_OLLAMA_PORT), and the dashboard on its own data
## directory. Ctrl-C stops both.
DEMO_OLLAMA_PORT ?= 11435
demo: $(VENV)/.runtime-installed
	@echo "make demo: stand-in Ollama (profile demo) on http://127.0.0.1:$(DEMO_OLLAMA_PORT); dashboard on http://127.0.0.1:$(PORT)"
	@$(PY) -m tests.standin --profile demo --port $(DEMO_OLLAMA_PORT) & standin=$$!; \
	trap 'kill $$standin 2>/dev/null' EXIT INT TERM; \
	$(PY) -m tests.standin --wait-for http://127.0.0.1:$(DEMO_OLLAMA_PORT); \
	OLLAMA_HOST=http://127.0.0.1:$(DEMO_OLLAMA_PORT) DASHBOARD_BACKENDS_FILE= DASHBOARD_DATA_DIR=$${DASHBOARD_DATA_DIR:-data/demo} \
	$(PY) serve.py --server.port $(PORT) --server.address 127.0.0.1

## System packages the tests use: Debian's Chromium (e2e), Prometheus and PostgreSQL (integration; the job store's
## tests run on SQLite and on a throwaway PostgreSQL cluster, started as `nobody` when run as root),
## docker-compose (validates docker-compose.yml), docker.io and debootstrap (the image tier: the daemon, and a
## base image from Debian's packages; the tier skips with its reason where the daemon cannot start).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	{ command -v dockerd || test -x /usr/sbin/dockerd; } >/dev/null 2>&1 || missing="$$missing docker.io"; \
	{ command -v debootstrap || test -x /usr/sbin/debootstrap; } >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing fonts-dejavu-core >/dev/null; \
	fi

## Every test tier: unit, page (AppTest), integration (real Prometheus and PostgreSQL), end to end (Playwright +
## Chromium), and the image: its file set run from a folder everywhere, the real image wherever a container
## engine starts. The alerting rules are checked with promtool first.
test: $(VENV)/.dev-installed system-deps check-rules
	$(PY) -m ruff check .
	$(PY) -m pytest

## The alerting rules: syntax (check rules, and the config that loads them) and behaviour on synthetic series.
check-rules: system-deps
	promtool check rules monitoring/alerts.yml
	promtool check config prometheus.yml
	promtool test rules monitoring/alerts.test.yml

test-unit: $(VENV)/.dev-installed
	$(PY) -m pytest tests/unit

test-pages: $(VENV)/.dev-installed
	$(PY) -m pytest tests/pages

test-e2e: $(VENV)/.dev-installed system-deps
	$(PY) -m pytest tests/e2e

test-integration: $(VENV)/.dev-installed system-deps
	$(PY) -m pytest tests/integration

## The image tier alone: the file set, then the real image built offline (base from debootstrap, wheels from
## `make wheels`), run on the host network against the stand-in, every page in Chromium. Needs root for dockerd.
test-image: $(VENV)/.dev-installed system-deps wheels
	$(PY) -m pytest tests/image

## Download the pinned requirements into ./wheelhouse, for `docker build --network none` (an air-gapped site).
wheels: wheelhouse/.complete

wheelhouse/.complete: requirements.txt | $(PY)
	rm -rf wheelhouse
	$(PY) -m pip download --quiet --disable-pip-version-check --only-binary=:all: --implementation cp \
	  --python-version $(WHEELS_PYTHON) $(WHEELS_PLATFORMS) -r requirements.txt -d wheelhouse
	touch $@

## Performance ratios measured in one run against a baseline (no timing assertions in tests).
bench: $(VENV)/.dev-installed system-deps
	$(PY) -m bench

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

## A loopback Ollama stand-in alone (in a second terminal, beside `make run`); `make demo` runs both at once.
standin: $(VENV)/.runtime-installed
	$(PY) -m tests.standin --port $${STANDIN_PORT:-11434}

clean:
	rm -rf $(VENV) .pytest_cache artifacts wheelhouse
