# fxnb tasks. `make demo` and `make test` are the two set-up commands in the README:
# each creates .venv and installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fxnb-installed

.PHONY: install chromium demo test lint bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Browser tests drive Debian's chromium (playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || /usr/bin/chromium --version >/dev/null 2>&1 || \
	  { echo "installing Debian chromium for the browser tests"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(VENV)/bin/ruff check fxnb tests conftest.py

test: install chromium lint
	$(PY) -m pytest -q
	$(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks/

demo: install
	$(VENV)/bin/fxnb demo

bench: install
	$(PY) -m fxnb.bench

soak: install
	$(PY) -m pytest -q -m slow tests/soak --soak-minutes=60

clean:
	rm -rf $(VENV) build *.egg-info
