"""Keys that do not expire into an outage: an instance whose keys live 30 s keeps answering for
well over one lifetime, because the supervisor renews them through TorchServe's token API and
rewrites key_file.json; the gateway's health stays SERVING; the replaced key is refused; a
long-lived service.client given the key file (gRPC and REST) follows the renewals."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
import requests

from service import launcher
from service.client import ExplainClient, ExplainClientError
from service.gateway.process import health_status
from service.launcher import keys
from tests.e2e.conftest import archive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
LIFETIME_MIN = 0.5


def test_keys_are_renewed_before_they_expire(sources, tmp_path_factory):
    store = tmp_path_factory.mktemp("store_keys")
    archive(sources["tab"], "tab", store)
    run_dir = tmp_path_factory.mktemp("run_keys") / "keys"
    srv = launcher.start(store, run_dir, auth=True, timeout=300,
                         token_expiration_min=LIFETIME_MIN)
    body = {"inputs": {"tabular": {"features": {"age": 30.0}}}}
    gateway = f"127.0.0.1:{srv.ports['gateway']}"
    try:
        first = srv.key()
        left = keys.seconds_left(keys.read_keys(srv.key_file)["inference"])
        assert 0 < left <= LIFETIME_MIN * 60 + 1
        seen, failures, retried, health = {first}, [], 0, []
        # constructed once, before the first renewal: they must re-read the key file
        long_lived = [ExplainClient(gateway, key_file=srv.key_file, timeout=60),
                      ExplainClient(mode="rest", rest_url=srv.inference_url,
                                    key_file=srv.key_file, timeout=60)]
        end = time.monotonic() + 2 * LIFETIME_MIN * 60 + 5   # two lifetimes and more
        while time.monotonic() < end:
            for client in long_lived:
                try:
                    client.predict("tab", features={"age": 30.0})
                except ExplainClientError as e:
                    failures.append(f"long-lived {client.mode} {e.status} {e}")
            key = srv.key()
            seen.add(key)
            r = requests.post(f"{srv.inference_url}/predictions/tab", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {key}"})
            if r.status_code == 400 and srv.key() != key:   # raced a renewal: re-read, retry
                retried += 1
                r = requests.post(f"{srv.inference_url}/predictions/tab", json=body,
                                  timeout=60, headers=srv.headers())
            if r.status_code != 200:
                failures.append(f"REST {r.status_code} {r.text[:100]}")
            try:
                with ExplainClient(gateway, token=srv.key(), timeout=60) as c:
                    c.predict("tab", features={"age": 30.0})
            except ExplainClientError as e:
                failures.append(f"gRPC {e.status} {e}")
            health.append(health_status(gateway, timeout=2))
            time.sleep(0.5)
        for client in long_lived:
            client.close()
        assert not failures, failures
        assert len(seen) >= 3, "the inference key was not renewed twice in two lifetimes"
        assert set(health) == {1}, health   # SERVING throughout
        assert retried <= len(seen)         # at most one race per renewal
        # the replaced key is refused: the renewal is real, not a longer lifetime
        r = requests.post(f"{srv.inference_url}/predictions/tab", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {first}"})
        assert r.status_code == 400
        assert stat.S_IMODE(os.stat(srv.key_file).st_mode) == 0o600
        log = (run_dir / "logs" / "supervisor.log").read_text()
        assert "renewed the inference key" in log and "renewed the management key" in log
        assert not any(k in log for k in seen)   # keys never logged
        assert json.loads(srv.key_file.read_text())["API"]["key"] not in log
    finally:
        launcher.stop(run_dir)
