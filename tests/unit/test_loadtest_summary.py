"""make loadtest's console summary: names parsed into protocol/model/algorithm, and the table
built from a locust stats CSV; a stale ports.json is refused with a hint, not a traceback."""

from __future__ import annotations

import json
import socket

from loadtest import run
from loadtest.summary import PREDICTION, parse_name, read, table

HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
          "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
          "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")


def _line(kind: str, name: str, n: int, fail: int, rps: float, p50: int, p95: int, p99: int
          ) -> str:
    return (f"{kind},{name},{n},{fail},{p50},{p50},1,{p99},10,{rps},0,{p50},0,0,0,0,{p95},0,"
            f"{p99},0,0,{p99}")


def test_names_are_split_into_protocol_model_algorithm() -> None:
    assert parse_name("POST", "REST explanations digits IntegratedGradients") == (
        "REST", "digits", "IntegratedGradients")
    assert parse_name("POST", "REST predictions recommender") == ("REST", "recommender",
                                                                   PREDICTION)
    assert parse_name("grpc", "Explain resnet18 Saliency") == ("gRPC", "resnet18", "Saliency")
    assert parse_name("grpc", "Predict digits") == ("gRPC", "digits", PREDICTION)


def test_table_has_a_row_per_name_and_the_totals(tmp_path) -> None:
    csv = tmp_path / "x_stats.csv"
    csv.write_text("\n".join([
        HEADER,
        _line("POST", "REST explanations digits IntegratedGradients", 40, 1, 4.0, 120, 300, 410),
        _line("grpc", "Predict breast_cancer", 100, 0, 10.0, 12, 30, 45),
        _line("", "Aggregated", 140, 1, 14.0, 20, 200, 400),
    ]) + "\n")
    rows = read(csv)
    assert [(r.protocol, r.model, r.algorithm, r.requests, r.failures) for r in rows] == [
        ("REST", "digits", "IntegratedGradients", 40, 1), ("gRPC", "breast_cancer", PREDICTION,
                                                          100, 0)]
    assert rows[0].p50 == 120 and rows[0].p95 == 300 and rows[0].p99 == 410
    text = table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["protocol", "model", "algorithm"]
    assert lines[-1].split()[:3] == ["all", "140", "1"]
    assert "410" in text and "IntegratedGradients" in text


def test_stale_ports_file_is_refused_with_a_hint(tmp_path, monkeypatch, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inst = tmp_path / "run" / "gone"
    inst.mkdir(parents=True)
    (inst / "ports.json").write_text(json.dumps({"inference": port, "gateway": port}))
    monkeypatch.setattr(run, "ROOT", tmp_path)
    assert run.main(["--instance", "gone"]) == 2
    err = capsys.readouterr().err
    assert "make serve INSTANCE=gone" in err and "not running" in err
