# `make install`, `make test`, `make demo`: each creates .venv on first use and is idempotent.
# Output is quiet on success; an install failure prints its log.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.finsight-installed
EXTRAS ?= cpu,serve,dev
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: install test test-all demo bench-install clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) torch==2.13.0 > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@$(PIP) -e '.[$(EXTRAS)]' >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

test: install
	@$(PY) -m pytest -q

test-all: install
	@$(PY) -m pytest -q -m ''

demo: install
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

bench-install: install
	@$(PIP) -e '.[$(EXTRAS),bench]' >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }

clean:
	rm -rf finsight-work .pytest_cache
