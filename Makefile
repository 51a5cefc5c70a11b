# `make install`, `make test`, `make demo`: each creates .venv on first use and is idempotent.
# Output is quiet on success; an install failure prints its log.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.finsight-installed
EXTRAS ?= cpu,serve,triton,dev
PIP := $(PY) -m pip install -q -c constraints.txt
# The Python env of tritonserver's python-backend models (finsight triton check, the Triton
# tests): its own venv because the stub needs numpy<2 and finsight's venv has numpy 2.
# Its packages are finsight/triton/server-requirements.txt (also the Triton image's list);
# nvidia-pytriton brings the tritonserver binary; --no-deps skips its client-side deps.
TRITON_VENV ?= $(VENV)-triton
TRITON_STAMP := $(TRITON_VENV)/.finsight-installed
TRITON_REQUIREMENTS := finsight/triton/server-requirements.txt
TRITON_SERVER := nvidia-pytriton==0.7.0

.PHONY: install test test-all demo bench-install clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) torch==2.13.0 > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@$(PIP) -e '.[$(EXTRAS)]' >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

$(TRITON_STAMP): Makefile $(TRITON_REQUIREMENTS)
	@test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	@$(TRITON_VENV)/bin/python -m pip install -q -r $(TRITON_REQUIREMENTS) > $(TRITON_VENV)/install.log 2>&1 \
		|| { cat $(TRITON_VENV)/install.log; exit 1; }
	@$(TRITON_VENV)/bin/python -m pip install -q --no-deps $(TRITON_SERVER) >> $(TRITON_VENV)/install.log 2>&1 \
		|| { cat $(TRITON_VENV)/install.log; exit 1; }
	@touch $(TRITON_STAMP)

install: $(STAMP) $(TRITON_STAMP)

test: install
	@$(VENV)/bin/lint-imports --no-cache --no-logo > $(VENV)/lint-imports.log 2>&1 \
		|| { cat $(VENV)/lint-imports.log; exit 1; }
	@$(PY) -m pytest -q

test-all: install
	@$(PY) -m pytest -q -m ''

demo: install
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

bench-install: install
	@$(PIP) -e '.[$(EXTRAS),bench]' >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }

clean:
	rm -rf finsight-work .pytest_cache
