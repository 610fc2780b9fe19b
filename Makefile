# Every target bootstraps .venv on first use, so `make serve` or `make test` works first on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint bench serve protos

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(PIP_CONSTRAINTS) -e '.[dev,serve,viz,progress]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check service tests bench handlers model_store loadtest

bench: $(STAMP)
	$(PY) -m bench.engine_vs_captum

serve: $(STAMP)
	$(PY) -m service.examples.getting_started

protos: $(STAMP)
	$(PY) scripts/gen_protos.py
