#!/bin/sh
# Container entry point: the supervisor (python -m service.launcher supervise) runs as PID 1.
# It starts TorchServe in the foreground with every bundled archive as its child, runs the gRPC
# Explainer gateway (0.0.0.0:50051) and restarts it within a second when it dies, and renews
# TorchServe's inference/management keys before they expire (TS_TOKEN_EXPIRATION_MIN, default
# 60, read by TorchServe too: enable_envvars_config=true). When TorchServe exits the supervisor
# stops the gateway and exits with its status, so the container's restart policy
# (docker run --restart=on-failure, a Kubernetes pod) starts everything again.
# Token authorization is on (TorchServe's default): key_file.json is written to /app; pass
# TS_EXTRA_ARGS=--disable-token-auth to turn it off. Extra arguments are passed to torchserve.
set -eu
cd /app
export TS_TOKEN_EXPIRATION_MIN="${TS_TOKEN_EXPIRATION_MIN:-60}"
# shellcheck disable=SC2086
exec python -m service.launcher supervise --run-dir /app \
  --gateway-listen 0.0.0.0:50051 --torchserve-grpc 127.0.0.1:7070 \
  --torchserve-rest http://127.0.0.1:8080 \
  --management-url http://127.0.0.1:8081 --key-file /app/key_file.json \
  --token-expiration-min "$TS_TOKEN_EXPIRATION_MIN" \
  -- torchserve --start --foreground --ncs \
  --model-store /app/model_store/build \
  --ts-config /app/docker/config.properties ${TS_EXTRA_ARGS:-} "$@"
