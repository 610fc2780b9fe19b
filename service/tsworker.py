"""Inside a TorchServe worker process: buffered reads of the frontend's frames.

TorchServe 0.12's worker reads a batch frame field by field, each field with its own
``socket.recv`` (``ts.protocol.otf_message_handler._retrieve_buffer``): a request id, every
HTTP header's name and value, each with its length, then the body, about forty system calls per
request. Under load that is the largest share of a worker's time outside the handler (a py-spy
profile of a tabular predictions worker: 22 % of its busy time, bench/README.md). ``install()``
replaces that one function, through which the worker reads its socket and nothing else does,
by a reader that takes whatever the socket holds (up to 256 KiB a call) into a buffer and
serves the fields from it: the same bytes, in the same order, as ``bytearray``\\ s as before.

It is installed by our handler's ``initialize`` (the worker then has read only its load
message, unbuffered: nothing is lost at the switch), only on the TorchServe release it was
written against, and ``EXPLAIN_TS_BUFFERED_READS=0`` leaves TorchServe's reader in place.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

ENV = "EXPLAIN_TS_BUFFERED_READS"
VERSIONS = ("0.12.",)   # TorchServe releases whose frame reader this replaces
CHUNK = 256 * 1024

log = logging.getLogger(__name__)


class BufferedReader:
    """``read(conn, length)``: the next ``length`` bytes of ``conn`` as a bytearray; what the
    socket gave beyond them is kept for the next call (a new ``conn`` starts afresh). Exits
    the process, as TorchServe's reader does, when the frontend closes the connection."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self._conn: Any = None
        self._buf = bytearray()
        self._pos = 0
        self._lock = threading.Lock()   # one reader at a time (TorchServe has one)

    def __call__(self, conn: Any, length: int) -> bytearray:
        if length <= 0:
            return bytearray()
        with self._lock:
            if conn is not self._conn:
                self._conn, self._buf, self._pos = conn, bytearray(), 0
            buf = self._buf
            while len(buf) - self._pos < length:
                if self._pos:   # keep only what is unread before growing the buffer
                    del buf[:self._pos]
                    self._pos = 0
                pkt = conn.recv(max(self.chunk, length - len(buf)))
                if not pkt:
                    logging.info("Frontend disconnected.")
                    sys.exit(0)
                buf += pkt
            out = buf[self._pos:self._pos + length]
            self._pos += length
            if self._pos == len(buf):
                buf.clear()
                self._pos = 0
            return out


def install() -> bool:
    """Replaces TorchServe's frame reader in this process (once); whether it is in place."""
    if os.environ.get(ENV, "1").strip() == "0":
        return False
    try:
        import ts
        from ts.protocol import otf_message_handler as otf
    except ImportError:
        return False
    current = getattr(otf, "_retrieve_buffer", None)
    if isinstance(current, BufferedReader):
        return True
    version = str(getattr(ts, "__version__", ""))
    code = getattr(current, "__code__", None)
    if (not version.startswith(VERSIONS) or code is None
            or code.co_varnames[:2] != ("conn", "length")):
        log.info("TorchServe %s: its frame reader is left as it is", version or "?")
        return False
    global _original
    _original = current
    otf._retrieve_buffer = BufferedReader()
    return True


_original: Any = None   # TorchServe's reader, while ours is installed


def uninstall() -> None:
    """Puts TorchServe's reader back (tests)."""
    global _original
    if _original is not None:
        from ts.protocol import otf_message_handler as otf

        otf._retrieve_buffer, _original = _original, None
