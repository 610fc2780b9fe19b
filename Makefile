# Every target bootstraps .venv on first use, so `make serve` or `make test` works first on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: venv browser test test-fast lint typecheck check bench bench-service loadtest serve serve-stop explorer protos models chaos soak

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(PIP_CONSTRAINTS) -e '.[dev,serve,viz,progress,explorer]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) models browser
	$(PY) -m pytest -q

# The explorer's browser tests drive Debian's chromium (Playwright cannot download browsers
# here); installed with apt when missing and running as root, else a hint.
CHROMIUM ?= chromium
browser:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make test: the browser tests need Debian's chromium (sudo apt-get install chromium)" >&2; exit 1; fi; }

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check service tests bench handlers model_store loadtest scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy service handlers

# make check: what every change must pass (ruff, mypy, the fast tests); .ci/run runs it first.
check: lint typecheck test-fast

bench: $(STAMP)
	$(PY) -m bench.engine_vs_captum

# make serve [AUTH=off] [INSTANCE=name] [PORT_BASE=n] [TOKEN_MIN=60]: TorchServe with every
# bundled model, the gateway and their supervisor, working files in run/$(INSTANCE)/ (ports
# are free ports unless PORT_BASE is given; keys live TOKEN_MIN minutes and are renewed).
AUTH ?= on
INSTANCE ?= default
PORT_BASE ?= 0
TOKEN_MIN ?= 60
ACCESS_LOG ?= off

serve: $(STAMP) models
	$(PY) -m service.launcher start --instance $(INSTANCE) --auth $(AUTH) --port-base $(PORT_BASE) \
		--token-expiration-min $(TOKEN_MIN) --access-log $(ACCESS_LOG) $(if $(WORKERS),--workers $(WORKERS))

# make loadtest [INSTANCE=name] [USERS=8] [SECONDS=20] [MODELS=digits,resnet18]: a bounded locust
# run (REST + gRPC users) against the service `make serve` started; a summary table on the
# console, CSV and JSON results in loadtest/results/.
USERS ?= 8
SECONDS ?= 20
MODELS ?= digits,breast_cancer,recommender
loadtest: $(STAMP)
	$(PY) -m loadtest.run --instance $(INSTANCE) --users $(USERS) --seconds $(SECONDS) --models $(MODELS)

# make bench-service: bench/service_throughput.py (ours fused vs batch 1 vs stock captum handler).
bench-service: $(STAMP) models
	$(PY) -m bench.service_throughput

# make explorer [INSTANCE=name] [EXPLORER_PORT=8090]: the explorer page (service/explorer) in
# front of the instance `make serve` started, on 127.0.0.1 (Ctrl-C stops it).
EXPLORER_PORT ?= 8090
explorer: $(STAMP)
	$(PY) -m service.explorer --instance $(INSTANCE) --listen 127.0.0.1:$(EXPLORER_PORT)

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
MODEL_NAMES := digits breast_cancer recommender resnet18 tinylm
MODEL_BUILD := model_store/build
MODEL_COMMON := $(wildcard model_store/_*.py) model_store/archive.py $(wildcard service/nets/*.py)

models: $(MODEL_NAMES:%=$(MODEL_BUILD)/%.mar)

$(MODEL_BUILD)/%.mar: model_store/%.py $(MODEL_COMMON) $(HANDLER) $(STAMP)
	$(PY) -m model_store $* --handler $(HANDLER) --out $(MODEL_BUILD)

$(HANDLER):
	@echo "make models: handler file $(HANDLER) not found (it comes with the serving code; pass HANDLER=path)" >&2; exit 1
