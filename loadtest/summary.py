"""The console summary of a locust run: one row per protocol, model and algorithm, read from
locust's ``<stem>_stats.csv`` (rps, failures, p50/p95/p99 in ms)."""

from __future__ import annotations

import csv
import pathlib
from dataclasses import dataclass

PREDICTION = "(prediction)"


@dataclass(frozen=True)
class Row:
    protocol: str
    model: str
    algorithm: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float


def parse_name(request_type: str, name: str) -> tuple[str, str, str]:
    """(protocol, model, algorithm) from the locustfile's request names:
    ``REST explanations digits IntegratedGradients``, ``REST predictions digits`` (POST) and
    ``Explain digits Saliency``, ``Predict digits`` (grpc)."""
    words = name.split()
    if request_type.lower() == "grpc":
        kind, rest = (words[0], words[1:]) if words else ("", [])
        protocol = "gRPC"
    else:
        kind, rest = (words[1], words[2:]) if len(words) > 1 else ("", words)
        protocol = "REST"
    model = rest[0] if rest else "?"
    algorithm = rest[1] if len(rest) > 1 else ""
    if kind.lower().startswith("predict"):
        algorithm = PREDICTION
    return protocol, model, algorithm or "?"


def _num(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def read(stats_csv: pathlib.Path) -> list[Row]:
    rows = []
    with open(stats_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("Name") == "Aggregated" or not r.get("Type"):
                continue
            protocol, model, algorithm = parse_name(r["Type"], r["Name"])
            rows.append(Row(protocol, model, algorithm, int(r["Request Count"]),
                            int(r["Failure Count"]), _num(r["Requests/s"]), _num(r["50%"]),
                            _num(r["95%"]), _num(r["99%"])))
    return sorted(rows, key=lambda r: (r.protocol, r.model, r.algorithm))


def table(rows: list[Row]) -> str:
    head = ("protocol", "model", "algorithm", "requests", "failures", "rps", "p50 ms",
            "p95 ms", "p99 ms")
    body = [(r.protocol, r.model, r.algorithm, str(r.requests), str(r.failures), f"{r.rps:.1f}",
             f"{r.p50:.0f}", f"{r.p95:.0f}", f"{r.p99:.0f}") for r in rows]
    total_req = sum(r.requests for r in rows)
    total_fail = sum(r.failures for r in rows)
    body.append(("all", "", "", str(total_req), str(total_fail),
                 f"{sum(r.rps for r in rows):.1f}", "", "", ""))
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(cells, widths))) for cells in (head, *body)]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
