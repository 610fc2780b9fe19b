#!/bin/sh
# Container entry point: TorchServe in the foreground with every bundled archive.
# Token authorization is on (TorchServe's default): key_file.json is written to /app; pass
# TS_EXTRA_ARGS=--disable-token-auth to turn it off. Extra arguments are passed to torchserve.
set -eu
cd /app
# shellcheck disable=SC2086
exec torchserve --start --foreground --ncs \
  --model-store /app/model_store/build --models all \
  --ts-config /app/docker/config.properties ${TS_EXTRA_ARGS:-} "$@"
