#!/bin/sh
# Container entry point: the gRPC Explainer gateway (0.0.0.0:50051, in the background) in front
# of TorchServe, which runs in the foreground with every bundled archive.
# Token authorization is on (TorchServe's default): key_file.json is written to /app; pass
# TS_EXTRA_ARGS=--disable-token-auth to turn it off. Extra arguments are passed to torchserve.
set -eu
cd /app
python -m service.gateway --listen 0.0.0.0:50051 --torchserve 127.0.0.1:7070 \
  --management-url http://127.0.0.1:8081 --key-file /app/key_file.json &
# shellcheck disable=SC2086
exec torchserve --start --foreground --ncs \
  --model-store /app/model_store/build --models all \
  --ts-config /app/docker/config.properties ${TS_EXTRA_ARGS:-} "$@"
