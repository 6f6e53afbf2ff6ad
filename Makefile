# Two commands on a fresh machine with Python 3.11+:
#   make run   - set everything up and start the relay with the embedded emulator
#   make test  - set everything up, lint, type-check and run every test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest bench system-deps js-deps clean
JS_STAMP := tests/js/node_modules/.installed-stamp

# The venv is rebuilt whenever the dependency list changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "live-relay needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

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

# The JavaScript SDK test drives @google/genai (pinned by the lockfile) under Node.js; without
# Node.js that one test is skipped and says why.
js-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(JS_STAMP); \
	  else echo "Node.js not found: the JavaScript SDK test will be skipped"; fi

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --silent
	@touch $(JS_STAMP)

run: $(STAMP)
	$(VENV)/bin/live-relay dev

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

# pytest exits 5 when it collected nothing: a suite that runs no test is a failure, said plainly.
pytest: $(STAMP) system-deps js-deps
	@$(PY) -m pytest; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; \
	  exit $$status

test: lint typecheck pytest

bench: $(STAMP) system-deps
	$(PY) -m tests.bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache tests/js/node_modules
