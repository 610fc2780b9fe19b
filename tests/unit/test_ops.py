"""Operations without TorchServe: key files and their renewal (against a stand-in token API),
the supervisor restarting a dying child, the gateway's interceptor for unexpected errors, and
a static check that nothing in the service unpickles data."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import http.server
import json
import logging
import os
import pathlib
import shutil
import stat
import sys
import threading
import time
from unittest import mock

import grpc
import pytest

from service.launcher import keys, procs, supervisor

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _write_keys(path: pathlib.Path, inference: str, management: str, api: str,
                expires: dt.datetime) -> None:
    when = expires.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # Java prints up to 9 digits
    path.write_text(json.dumps({"management": {"key": management, "expiration time": when},
                                "inference": {"key": inference, "expiration time": when},
                                "API": {"key": api}}))
    os.chmod(path, 0o644)


def test_read_keys_parses_java_instants(tmp_path):
    f = tmp_path / "key_file.json"
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    _write_keys(f, "inf", "mgmt", "api", t)
    k = keys.read_keys(f)
    assert k["inference"].key == "inf" and k["inference"].expires == t
    assert k["API"].expires is None and keys.seconds_left(k["API"]) == float("inf")
    assert keys.seconds_left(k["inference"], t - dt.timedelta(seconds=30)) == pytest.approx(30)
    assert keys._parse_instant("2026-01-02T03:04:05Z") == t.replace(microsecond=0)


def test_renew_margin_is_a_quarter_of_the_lifetime_within_bounds():
    assert keys.renew_margin_s(3600) == 600   # capped at 10 min
    assert keys.renew_margin_s(60) == 15
    assert keys.renew_margin_s(4) == 5


class _TokenAPI(http.server.BaseHTTPRequestHandler):
    """TorchServe's token API as keys.renew sees it: GET /token?type=K with the API key
    rewrites the key file with a new K key."""

    key_file: pathlib.Path
    calls: list[str] = []
    refuse = False

    def do_GET(self):  # noqa: N802
        data = json.loads(self.key_file.read_text())
        ok = (self.headers.get("Authorization") == f"Bearer {data['API']['key']}"
              and not self.refuse)
        kind = self.path.split("type=")[-1]
        self.calls.append(kind)
        if not ok or kind not in data:
            self.send_response(400)
            self.end_headers()
            return
        data[kind] = {"key": data[kind]["key"] + "-new", "expiration time":
                      (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))
                      .strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        self.key_file.write_text(json.dumps(data))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def token_api(tmp_path):
    f = tmp_path / "key_file.json"
    handler = type("H", (_TokenAPI,), {"key_file": f, "calls": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f, f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()


def test_renew_asks_the_token_api_with_the_api_key_and_keeps_the_file_private(token_api):
    f, url, handler = token_api
    _write_keys(f, "inf", "mgmt", "api", dt.datetime.now(dt.timezone.utc))
    new = keys.renew(url, f, "inference")
    assert new.key == "inf-new" and keys.seconds_left(new) > 50
    assert handler.calls == ["inference"]
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert keys.read_keys(f)["management"].key == "mgmt"  # only the asked kind changes
    with pytest.raises(ValueError, match="kind"):
        keys.renew(url, f, "API")


def test_renew_reports_a_refusal_and_an_unreachable_server(token_api):
    f, url, handler = token_api
    _write_keys(f, "inf", "mgmt", "api", dt.datetime.now(dt.timezone.utc))
    handler.refuse = True
    with pytest.raises(RuntimeError, match="HTTP 400"):
        keys.renew(url, f, "inference")
    with pytest.raises(RuntimeError, match="unreachable"):
        keys.renew("http://127.0.0.1:9", f, "inference", timeout=2)  # nothing listens there
    assert keys.read_keys(f)["inference"].key == "inf"


def test_key_keeper_renews_only_keys_close_to_expiry(token_api):
    f, url, handler = token_api
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=10)
    _write_keys(f, "inf", "mgmt", "api", soon)
    data = json.loads(f.read_text())
    data["management"]["expiration time"] = (soon + dt.timedelta(minutes=30)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    f.write_text(json.dumps(data))
    cfg = supervisor.SupervisorConfig(run_dir=f.parent, gateway_cmd=None, gateway_address=None,
                                      gateway_log=None, key_file=f, management_url=url,
                                      token_lifetime_s=60)
    keeper = supervisor.KeyKeeper(cfg)   # margin 15 s: inference (10 s left) only
    keeper.check()
    assert handler.calls == ["inference"] and keeper.renewals == 1
    assert keys.read_keys(f)["inference"].key == "inf-new"
    keeper.next_check = 0
    keeper.check()   # the new key has ~60 s left: nothing to do
    assert handler.calls == ["inference"]


def test_gateway_keeper_restarts_a_killed_child_at_once(tmp_path):
    cmd = (sys.executable, "-c", "import time; time.sleep(60)")
    cfg = supervisor.SupervisorConfig(run_dir=tmp_path, gateway_cmd=cmd, gateway_address=None,
                                      gateway_log=tmp_path / "g.log", key_file=None,
                                      management_url="http://127.0.0.1:9")
    keeper = supervisor.GatewayKeeper(cfg)
    try:
        keeper.check()
        first = keeper.proc.pid
        assert int((tmp_path / "tmp" / "gateway.pid").read_text()) == first
        keeper.proc.kill()
        keeper.proc.wait()
        t0 = time.monotonic()
        keeper.check()   # sees the exit: restart due now
        keeper.check()
        assert keeper.proc.pid != first and keeper.proc.poll() is None
        assert time.monotonic() - t0 < 1.0 and keeper.restarts == 1
        # a child that keeps dying right after its start is restarted with a growing delay
        for _ in range(2):
            keeper.proc.kill()
            keeper.proc.wait()
            keeper.check()
            keeper.restart_at and keeper.check()
        assert keeper.restart_at is not None and keeper.restart_at > time.monotonic()
    finally:
        if keeper.proc is not None:
            keeper.proc.kill()
            keeper.proc.wait()


def test_supervisor_stops_with_its_gateway_when_the_run_directory_is_removed(tmp_path):
    run_dir = tmp_path / "instance"
    (run_dir / "tmp").mkdir(parents=True)
    cmd = (sys.executable, "-c", "import time; time.sleep(60)")
    cfg = supervisor.SupervisorConfig(run_dir=run_dir, gateway_cmd=cmd, gateway_address=None,
                                      gateway_log=tmp_path / "g.log", key_file=None,
                                      management_url="http://127.0.0.1:9", poll_s=0.05)
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(supervisor.run(cfg)), daemon=True)
    # signal handlers can only be set from the main thread: run() sets them, so patch them out
    with mock.patch.object(supervisor.signal, "signal"):
        thread.start()
        deadline = time.monotonic() + 10
        while not (run_dir / "tmp" / "gateway.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int((run_dir / "tmp" / "gateway.pid").read_text())
        shutil.rmtree(run_dir)
        thread.join(timeout=15)
    assert done == [0] and not thread.is_alive()
    assert not procs.alive(child)


def test_procs_sees_children_and_memory():
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procs.children(os.getpid())
        assert child.pid in procs.descendants(os.getpid())
        assert procs.rss_bytes(os.getpid()) > 10 << 20 and procs.rss_bytes(child.pid) > 0
        assert procs.alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not procs.alive(child.pid) and procs.rss_bytes(child.pid) is None


def test_interceptor_logs_the_traceback_and_answers_internal(caplog):
    from service.gateway.server import LogUnexpected

    async def boom(request, context):
        raise RuntimeError("secret detail from the request")

    async def main():
        server = grpc.aio.server(interceptors=[LogUnexpected()])
        handler = grpc.method_handlers_generic_handler("t.T", {
            "Boom": grpc.unary_unary_rpc_method_handler(boom, request_deserializer=bytes,
                                                        response_serializer=bytes)})
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                call = ch.unary_unary("/t.T/Boom", request_serializer=bytes,
                                      response_deserializer=bytes)
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await call(b"x", metadata=(("authorization", "Bearer tok123"),), timeout=5)
                return e.value
        finally:
            await server.stop(None)

    with caplog.at_level(logging.ERROR, logger="service.gateway"):
        err = asyncio.run(main())
    assert err.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in err.details() and "logged" in err.details()
    text = caplog.text
    assert "Traceback" in text and "RuntimeError" in text and "/t.T/Boom" in text
    assert "tok123" not in text


# -- nothing a request sends is unpickled -------------------------------------------------------

def _calls(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            yield "import", names, node
        elif isinstance(node, ast.Call):
            yield "call", ast.unparse(node.func), node


def test_no_pickle_and_torch_load_only_with_weights_only():
    """pickle/dill/marshal/shelve are never imported; every torch.load passes
    weights_only=True (tensors only, no code); numpy never loads with allow_pickle."""
    files = [p for d in ("service", "handlers") for p in (ROOT / d).rglob("*.py")
             if "_proto" not in p.parts]
    assert len(files) > 20
    bad = []
    for f in files:
        for kind, what, node in _calls(f):
            where = f"{f.relative_to(ROOT)}:{node.lineno}"
            if kind == "import" and {"pickle", "dill", "marshal", "shelve", "cPickle"} & {
                    n.split(".")[0] for n in what}:
                bad.append(f"{where} imports {what}")
            if kind == "call" and what == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant)
                        and kw["weights_only"].value is True):
                    bad.append(f"{where} torch.load without weights_only=True")
            if kind == "call" and what in ("np.load", "numpy.load"):
                kw = {k.arg: k.value for k in node.keywords}
                if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant)
                                                 and kw["allow_pickle"].value is False):
                    bad.append(f"{where} np.load with allow_pickle")
    assert not bad, bad


def test_health_follows_torchserve_and_retries_a_failed_ping_once(caplog):
    from grpc_health.v1 import health, health_pb2

    from service.gateway.server import SERVICE_NAME, _follow_health

    class Upstream:
        def __init__(self, answers):
            self.answers = list(answers)

        async def healthy(self):
            return self.answers.pop(0) if self.answers else True

    async def status_after(answers, rounds, interval):
        checker = health.aio.HealthServicer()
        task = asyncio.ensure_future(_follow_health(Upstream(answers), checker, interval))
        seen = []
        for _ in range(rounds):
            await asyncio.sleep(0.02)
            req = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            try:
                seen.append((await checker.Check(req, None)).status)
            except AttributeError:   # not set yet: the servicer would abort NOT_FOUND
                pass
        task.cancel()
        return seen

    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)
    with caplog.at_level(logging.INFO, logger="service.gateway"):
        # one failed ping (a key file being rewritten) is retried: never NOT_SERVING (which,
        # set, would last an interval, 0.1 s, and be seen by the 0.02 s sampling)
        seen = asyncio.run(status_after([True, False, True], 45, 0.1))
        assert seen and not_serving not in seen
        # two in a row: NOT_SERVING, then SERVING again when TorchServe answers
        seen = asyncio.run(status_after([False, False], 60, 0.1))
    assert seen[0] == not_serving and seen[-1] == serving
    assert "health: NOT_SERVING" in caplog.text and "health: SERVING" in caplog.text


def test_access_log_is_off_unless_asked(tmp_path) -> None:
    """write_config's log4j2 file: the ACCESS_LOG logger off by default, on with access_log."""
    from service.launcher.torchserve import choose_ports, write_config

    for on in (False, True):
        write_config(tmp_path, tmp_path, [], choose_ports(None), True, 1, access_log=on)
        xml = (tmp_path / "log4j2.xml").read_text()
        assert (f'<Logger name="ACCESS_LOG" level="{"info" if on else "off"}"' in xml)
        assert f"{tmp_path / 'logs'}/access_log.log" in xml
