# Two commands on a fresh machine with python3 (3.11+) and make:
#   make run   - set everything up and start the relay with the embedded emulator
#   make test  - set everything up, lint, type-check and run every test
# and one for the inner loop:
#   make test-fast - lint, type-check and the tests that start no server, process or browser
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Locked dependencies (hashes included) that `make`, CI and the Dockerfile install from;
# `make lock` rewrites them from pyproject.toml.
LOCK_DEV     := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt
UV_VERSION   := 0.13.9
UV           := $(VENV)/bin/uv
UV_COMPILE   := $(UV) pip compile pyproject.toml --universal --python-version 3.11 \
                --generate-hashes --quiet --custom-compile-command "make lock"
# `make run ARGS="--port 8081"`: options for `live-relay dev` (`live-relay dev --help` lists them).
ARGS ?=
# The exit status `live-relay dev` uses for "port taken", after printing the one line that says
# what to do: make adds no error of its own for it (see app/ports.py).
PORT_TAKEN_STATUS := 8
# pytest-xdist workers for `make pytest`. The suite mostly waits on sockets, processes and
# timers, so twice the cores keeps a 2-core machine busy; PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) * 2 )))

.PHONY: run test test-fast lint typecheck pytest bench bench-deps system-deps js-deps prometheus-bin docs config-docs lock clean
JS_STAMP := tests/js/node_modules/.installed-stamp

# Debian and Ubuntu ship venv's ensurepip in a package of its own, named after the exact Python
# (python3.11-venv): install it when root, else say exactly what to install.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "live-relay needs Python 3.11 or newer")'
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  package=python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "$(PYTHON) has no venv support: installing $$package with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$package >/dev/null; \
	  else echo "$(PYTHON) cannot create a virtualenv: install $$package (sudo apt-get install $$package), then run make again"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)

# The venv is rebuilt whenever the locked dependencies change; `pip check` catches a dependency
# added to pyproject.toml but not to the lock.
$(STAMP): $(PY) pyproject.toml $(LOCK_DEV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK_DEV)
	$(PY) -m pip install --quiet --no-deps -e .
	@$(PY) -m pip check >/dev/null || { $(PY) -m pip check; \
	  echo "the lock file misses a dependency of pyproject.toml: run make lock"; exit 1; }
	@touch $(STAMP)

$(UV): $(PY)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)

# Re-resolve the lock files after a change to pyproject.toml; pins already there are kept
# unless pyproject.toml rules them out. `make lock UPGRADE=1` moves every pin to its newest.
lock: $(UV)
	@mkdir -p requirements
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -o $(LOCK_RUNTIME)
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) --extra dev --extra docs -o $(LOCK_DEV)

# Tests start their own redis-server on a free port; install it when the machine lacks it.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server is missing: install it (apt-get install redis-server / brew install redis)"; exit 1; fi; }
	@# The browser tests drive Debian's Chromium with a fake microphone fed by espeak-ng + sox.
	@# (Ubuntu's chromium package is a snap stub: see docs/browsers.md.)
	@missing=""; for tool in chromium espeak-ng sox; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else echo "missing:$$missing: the browser tests will be skipped (apt-get install$$missing)"; fi; fi
	@# tests/ledger writes to a real PostgreSQL (a database of its own per test): the one on
	@# 127.0.0.1:5432 with trust auth, unless LIVE_RELAY_TEST_POSTGRES names another.
	@$(PYTHON) -c 'import os, socket, urllib.parse as u; url = u.urlparse(os.environ.get("LIVE_RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")); socket.create_connection((url.hostname, url.port or 5432), timeout=2).close()' 2>/dev/null || \
	  echo "PostgreSQL does not answer on 127.0.0.1:5432: tests/ledger will fail (start it, or set LIVE_RELAY_TEST_POSTGRES)"

# tests/ops runs the compose monitoring profile's Prometheus config with a real Prometheus:
# Debian's, unpacked into .cache/ (apt-get download + dpkg-deb: no service installed or
# started). Elsewhere that test checks the config's scrape target without it, and says so.
PROMETHEUS := .cache/prometheus/usr/bin/prometheus
prometheus-bin:
	@[ -x $(PROMETHEUS) ] || ! command -v apt-get >/dev/null 2>&1 || { \
	  mkdir -p .cache/prometheus && cd .cache/prometheus && \
	  { apt-get download prometheus >/dev/null 2>&1 || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; } && \
	  dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb; } || \
	  echo "Prometheus could not be fetched: the compose test will check its config without it"

# The JavaScript SDK test drives @google/genai (pinned by the lockfile) under Node.js; without
# Node.js that one test is skipped and says why.
js-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(JS_STAMP); \
	  else echo "Node.js not found: the JavaScript SDK test will be skipped"; fi

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --silent
	@touch $(JS_STAMP)

run: $(STAMP)
	@$(VENV)/bin/live-relay dev $(ARGS) || { status=$$?; [ $$status = $(PORT_TAKEN_STATUS) ] || exit $$status; }

# The documentation site, from docs/ (Sphinx + MyST): warnings are errors.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "built docs/_build/html/index.html"

# docs/configuration.md is generated from app/settings.py; tests/docs fails when it is stale.
config-docs: $(STAMP)
	$(PY) -m app.settings_doc docs/configuration.md

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

# pytest exits 5 when it collected nothing: a suite that runs no test is a failure, said plainly.
# worksteal: a worker that runs out takes queued tests from a busy one, so the few long tests
# (a browser latency run, the compose stack) do not leave the others idle at the end.
pytest: $(STAMP) system-deps js-deps prometheus-bin
	@$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; \
	  exit $$status

test: lint typecheck pytest

# The inner loop: every test skips itself at its first socket bind or process start
# (tests/conftest.py, --no-servers), so what runs are the unit tests; skips are not listed.
test-fast: lint typecheck
	@$(PY) -m pytest --no-servers -q -r fE; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; \
	  exit $$status

# `make bench` measures nginx on the same core as the yardstick of a C proxy (tests/bench/targets.py).
bench-deps:
	@command -v nginx >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else echo "nginx is missing: install it (apt-get install nginx / brew install nginx)"; exit 1; fi; }

bench: $(STAMP) system-deps bench-deps
	$(PY) -m tests.bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache tests/js/node_modules docs/_build .cache
