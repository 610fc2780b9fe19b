# Every target bootstraps .venv on first use, so `make serve` or `make test` works first on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint bench bench-service loadtest serve serve-stop protos models chaos soak

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(PIP_CONSTRAINTS) -e '.[dev,serve,viz,progress]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) models
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check service tests bench handlers model_store loadtest

bench: $(STAMP)
	$(PY) -m bench.engine_vs_captum

# make serve [AUTH=off] [INSTANCE=name] [PORT_BASE=n] [TOKEN_MIN=60]: TorchServe with every
# bundled model, the gateway and their supervisor, working files in run/$(INSTANCE)/ (ports
# are free ports unless PORT_BASE is given; keys live TOKEN_MIN minutes and are renewed).
AUTH ?= on
INSTANCE ?= default
PORT_BASE ?= 0
TOKEN_MIN ?= 60

serve: $(STAMP) models
	$(PY) -m service.launcher start --instance $(INSTANCE) --auth $(AUTH) --port-base $(PORT_BASE) \
		--token-expiration-min $(TOKEN_MIN)

# make loadtest [INSTANCE=name] [USERS=8] [SECONDS=20]: a bounded locust run (REST + gRPC users)
# against the service `make serve` started; CSV and JSON results in loadtest/results/.
USERS ?= 8
SECONDS ?= 20
loadtest: $(STAMP)
	$(PY) -m loadtest.run --instance $(INSTANCE) --users $(USERS) --seconds $(SECONDS)

# make bench-service: bench/service_throughput.py (ours fused vs batch 1 vs stock captum handler).
bench-service: $(STAMP) models
	$(PY) -m bench.service_throughput

# make chaos: bench/chaos.py (its own instance: kill -9 a worker and the gateway under load).
chaos: $(STAMP) models
	$(PY) -m bench.chaos

# make soak [MINUTES=10]: bench/soak.py (its own instance, saturated; RSS, failures, p50/p99).
MINUTES ?= 10
soak: $(STAMP) models
	$(PY) -m bench.soak --minutes $(MINUTES)

serve-stop: $(STAMP)
	$(PY) -m service.launcher stop --instance $(INSTANCE)

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

# Bundled models: one archive per recipe, rebuilt only when its recipe, the shared recipe code,
# the architectures, the handler or the venv changed. HANDLER is packed into every archive.
HANDLER ?= handlers/explain_handler.py
MODEL_NAMES := digits breast_cancer recommender resnet18
MODEL_BUILD := model_store/build
MODEL_COMMON := $(wildcard model_store/_*.py) model_store/archive.py $(wildcard service/nets/*.py)

models: $(MODEL_NAMES:%=$(MODEL_BUILD)/%.mar)

$(MODEL_BUILD)/%.mar: model_store/%.py $(MODEL_COMMON) $(HANDLER) $(STAMP)
	$(PY) -m model_store $* --handler $(HANDLER) --out $(MODEL_BUILD)

$(HANDLER):
	@echo "make models: handler file $(HANDLER) not found (it comes with the serving code; pass HANDLER=path)" >&2; exit 1
