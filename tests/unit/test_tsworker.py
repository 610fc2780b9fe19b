"""The buffered frame reader (service/tsworker.py) parses what TorchServe's own reader parses,
from the same bytes however the socket splits them, keeps what it read ahead for the next
frame, exits on a closed connection as TorchServe's does, and installs only where it should."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading

import pytest
from ts.protocol import otf_message_handler as otf

from service import tsworker


def _s(b: bytes) -> bytes:
    return struct.pack("!i", len(b)) + b


def frame(requests: list[tuple[bytes, dict[bytes, bytes], list[tuple[str, str, bytes]]]]
          ) -> bytes:
    """An inference frame as TorchServe 0.12's frontend writes it: b"I", then per request its
    id, its headers (name, value) ended by -1, its inputs (name, content type, value) ended by
    -1; the batch ended by -1."""
    out = b"I"
    end = struct.pack("!i", -1)
    for rid, headers, inputs in requests:
        out += _s(rid)
        out += b"".join(_s(k) + _s(v) for k, v in headers.items()) + end
        out += b"".join(_s(n.encode()) + _s(t.encode()) + _s(v) for n, t, v in inputs) + end
    return out + end


BATCH = [
    (b"id-0", {b"explain": b"True", b"content-type": b"application/json"},
     [("body", "application/json", json.dumps({"inputs": {"tensor": [1, 2]}}).encode())]),
    (b"id-1", {b"explain": b"False", b"x": b""},
     [("body", "application/x-protobuf", bytes(range(256)) * 40)]),   # 10 KiB of binary
    (b"id-2", {}, [("explain_request", "application/octet-stream", b"\x00\x01"),
                   ("explain", "text/plain", b"true")]),
]


def _parse(data: bytes, reader, pieces: bool, frames: int = 1):
    """``retrieve_msg`` ``frames`` times with ``reader`` as the frame reader, the bytes sent
    from a thread in random small pieces (or at once)."""
    a, b = socket.socketpair()
    rng = random.Random(0)

    def send() -> None:
        i = 0
        while i < len(data):
            n = rng.randint(1, 97) if pieces else len(data)
            a.sendall(data[i:i + n])
            i += n
    t = threading.Thread(target=send)
    t.start()
    saved = otf._retrieve_buffer
    otf._retrieve_buffer = reader
    try:
        return [otf.retrieve_msg(b) for _ in range(frames)]
    finally:
        otf._retrieve_buffer = saved
        t.join()
        a.close()
        b.close()


@pytest.fixture
def original():
    tsworker.uninstall()   # a handler initialized earlier in this process installed ours
    return otf._retrieve_buffer


@pytest.mark.parametrize("pieces", [False, True])
def test_the_buffered_reader_parses_what_torchserves_parses(original, pieces):
    data = frame(BATCH)
    theirs = _parse(data, original, pieces=True)
    ours = _parse(data, tsworker.BufferedReader(chunk=64), pieces)
    assert ours == theirs
    cmd, msg = ours[0]
    assert cmd == b"I" and [r["requestId"] for r in msg] == [b"id-0", b"id-1", b"id-2"]
    assert msg[0]["parameters"][0]["value"] == {"inputs": {"tensor": [1, 2]}}
    assert msg[1]["parameters"][0]["value"] == bytes(range(256)) * 40
    assert isinstance(msg[1]["requestId"], bytearray)   # the type TorchServe's reader gives


def test_what_was_read_ahead_serves_the_next_frame(original):
    data = frame(BATCH) + frame(BATCH[:1]) + frame(BATCH[1:])
    theirs = _parse(data, original, pieces=True, frames=3)
    ours = _parse(data, tsworker.BufferedReader(), pieces=False, frames=3)   # one recv
    assert ours == theirs and [len(m) for _, m in ours] == [3, 1, 2]


def test_a_closed_connection_exits_the_worker_as_torchserve_does(original):
    data = frame(BATCH)[:-30]   # cut off mid-frame
    for reader in (original, tsworker.BufferedReader()):
        a, b = socket.socketpair()
        a.sendall(data)
        a.close()
        saved = otf._retrieve_buffer
        otf._retrieve_buffer = reader
        try:
            with pytest.raises(SystemExit):
                otf.retrieve_msg(b)
        finally:
            otf._retrieve_buffer = saved
            b.close()


def test_install_once_and_only_where_it_should(original, monkeypatch):
    try:
        monkeypatch.setenv(tsworker.ENV, "0")
        assert not tsworker.install() and otf._retrieve_buffer is original
        monkeypatch.delenv(tsworker.ENV)
        monkeypatch.setattr(tsworker, "VERSIONS", ("9.9.",))
        assert not tsworker.install() and otf._retrieve_buffer is original
        monkeypatch.undo()
        assert tsworker.install() and isinstance(otf._retrieve_buffer, tsworker.BufferedReader)
        installed = otf._retrieve_buffer
        assert tsworker.install() and otf._retrieve_buffer is installed   # once
    finally:
        tsworker.uninstall()
    assert otf._retrieve_buffer is original
