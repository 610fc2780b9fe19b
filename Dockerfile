# syntax=docker/dockerfile:1
# The explanation service: TorchServe (Java 17 frontend, Python 3.11 workers) with the bundled
# models built at image build time. Stages:
#   deps     - Python dependencies only (cached until pyproject.toml / constraints.txt change)
#   models   - builds the .mar archives with the project's own recipes (nothing downloaded)
#   runtime  - Python 3.11 + Java 17 runtime, the venv, the package and the archives; non-root
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# torch from the CPU wheel index (the pin in constraints.txt is the CPU build), then the
# package's runtime dependencies (its own plus the `serve` extra), read from pyproject.toml.
RUN python -m venv /opt/venv \
 && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['serve']))" > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

FROM deps AS models
COPY README.md ./
COPY service/ service/
COPY handlers/ handlers/
COPY model_store/ model_store/
# Deterministic recipes (fixed seeds, data shipped in scikit-learn or generated): see README.
RUN pip install --no-deps . \
 && python -m model_store --handler handlers/explain_handler.py --out /models

FROM ${PYTHON_IMAGE} AS runtime
# The Java 17 runtime TorchServe's frontend needs (the health check is Python: no curl).
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin explain
# glibc malloc as service/launcher/torchserve.py's MEMORY_ENV sets it for `make serve`: two
# arenas, a fixed mmap threshold (freed tensors go back to the system; bench/README.md, "Soak").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service/ service/
COPY handlers/ handlers/
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf build service.egg-info ./*.egg-info
COPY docker/ docker/
COPY --from=models /models/*.mar model_store/build/
# Register every archive with its spec's batch size and delay, as `make serve` does (TorchServe's
# `--models all` would register them with batch size 1: no batching, no fusion).
RUN python -m service.launcher models-config --model-store /app/model_store/build \
    >> /app/docker/config.properties
RUN mkdir -p /app/logs /app/tmp && chown -R 10001:10001 /app
USER 10001:10001
ENV TMPDIR=/app/tmp TEMP=/app/tmp LOG_LOCATION=/app/logs METRICS_LOCATION=/app/logs
# REST inference, management, metrics, and the gRPC gateway.
EXPOSE 8080 8081 8082 50051
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "/app/docker/healthcheck.py"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
