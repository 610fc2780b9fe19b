"""What the session's instance exposes: every port on loopback, the token required on inference
and management (REST and gRPC), the metrics port open without one (so it stays on loopback),
the key file private."""

from __future__ import annotations

import os
import pathlib
import stat

import grpc
import pytest
import requests

from service.client import ExplainClient, ExplainClientError

pytestmark = pytest.mark.e2e


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) listening on ``port``."""
    out = set()
    for name in ("tcp", "tcp6"):
        path = pathlib.Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            addr, hexport = cols[1].split(":")
            if cols[3] == "0A" and int(hexport, 16) == port:
                out.add(addr)
    return out


def test_every_port_listens_on_loopback_only(server):
    # 127.0.0.1, ::1, ::ffff:127.0.0.1 (Java binds IPv4 addresses on IPv6 sockets)
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    for name in ("inference", "management", "metrics", "grpc_inference", "grpc_management",
                 "gateway"):
        addrs = _listening(server.ports[name])
        assert addrs, f"nothing listens on the {name} port"
        assert addrs <= loopback, (name, addrs)


def test_inference_and_management_need_their_token(server):
    body = {"inputs": {"tabular": {"features": {"age": 30.0}}}}
    url = f"{server.inference_url}/predictions/tab"
    assert requests.post(url, json=body, timeout=30).status_code == 400
    assert requests.post(url, json=body, timeout=30,
                         headers={"Authorization": "Bearer wrong"}).status_code == 400
    assert requests.post(url, json=body, timeout=60, headers=server.headers()).status_code == 200
    models = f"{server.management_url}/models"
    assert requests.get(models, timeout=30).status_code == 400
    assert requests.get(models, timeout=30, headers=server.headers("inference")).status_code == 400
    assert requests.get(models, timeout=30, headers=server.headers("management")).status_code == 200
    # the metrics port answers without a key: that is why it binds to 127.0.0.1 (README)
    assert requests.get(f"{server.metrics_url}/metrics", timeout=30).status_code == 200


def test_gateway_needs_the_token(server):
    import numpy as np

    x = np.zeros((1, 8, 8), np.float32)
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=None, timeout=60) as c:
        with pytest.raises(ExplainClientError) as e:
            c.predict("tiny", tensor=x)
    assert e.value.status == grpc.StatusCode.PERMISSION_DENIED.name
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=server.key(),
                       timeout=60) as c:
        assert c.predict("tiny", tensor=x).prediction.label


def test_key_file_is_private(server):
    assert stat.S_IMODE(os.stat(server.key_file).st_mode) == 0o600
