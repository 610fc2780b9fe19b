"""A small asyncio HTTP/1.1 client for one server (TorchServe's REST inference API): POST with
a body, keep-alive connections pooled and reused, bodies framed by Content-Length or chunked.

Why not gRPC to TorchServe for every call: measured on this project's machine (bench/README.md
"Gateway upstream"), the same serialized ExplainRequest answered by the same worker takes
~1.5 ms longer through TorchServe's gRPC frontend and grpc.aio's client than through its REST
frontend and this client, on a call of ~15 ms.

One request per connection at a time (no pipelining); a connection goes back to the pool only
after a complete exchange with a response that allows reuse, so a timeout, a cancellation or a
malformed response closes it. A pooled connection the server closed meanwhile is noticed when
the exchange fails before any response byte arrived, and the request is sent once more on a
new connection (the requests sent here are explanations and predictions: safe to repeat)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

_HEAD_LIMIT = 64 * 1024   # status line and headers


class HttpError(Exception):
    """The exchange failed: no (complete) response. ``answered``: some of a response had
    arrived (else the request may be sent again on another connection)."""

    def __init__(self, message: str, answered: bool = True) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: dict[str, str]   # names lowercased; a repeated header's last value
    body: bytes


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Http1Pool:
    """Keep-alive connections to ``base_url`` (http:// or https://), at most ``max_connections``
    open at once (callers beyond wait), responses of at most ``max_body_bytes``."""

    def __init__(self, base_url: str, max_connections: int = 64,
                 max_body_bytes: int = 64 * 2**20) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{base_url!r} is not an http(s):// URL with a host")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        self._authority = u.netloc.encode("ascii")
        self._idle: collections.deque[_Conn] = collections.deque()
        self._slots = asyncio.Semaphore(max_connections)
        self.max_body_bytes = max_body_bytes
        self.opened = 0   # connections opened so far (tests and benchmarks read it)

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def post(self, path: str, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        """POST ``body`` to ``path`` (below the base URL's path, already percent-encoded)."""
        head = self._head(self.prefix + path, len(body), headers)
        async with self._slots:
            conn, reused = await self._connection()
            try:
                return await self._exchange(conn, head, body)
            except HttpError as e:
                if not reused or e.answered:
                    raise
            conn, _ = await self._connection(fresh=True)  # the server closed the pooled one
            return await self._exchange(conn, head, body)

    def _head(self, target: str, size: int, headers: Sequence[tuple[str, str]]) -> bytes:
        lines = [b"POST " + target.encode("ascii") + b" HTTP/1.1", b"Host: " + self._authority,
                 b"Content-Length: " + str(size).encode()]
        for k, v in headers:
            if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
                raise ValueError(f"header {k!r}: line breaks are not allowed")
            lines.append(f"{k}: {v}".encode("latin-1"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _connection(self, fresh: bool = False) -> tuple[_Conn, bool]:
        while self._idle and not fresh:
            conn = self._idle.pop()   # the most recently used: the least likely closed
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self._ssl,
                                                           limit=_HEAD_LIMIT)
        except OSError as e:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {e}",
                            answered=False) from None
        self.opened += 1
        return _Conn(reader, writer), False

    async def _exchange(self, conn: _Conn, head: bytes, body: bytes) -> Reply:
        done = False
        try:
            try:
                conn.writer.write(head)
                conn.writer.write(body)
                await conn.writer.drain()
            except OSError:
                pass  # a server refusing a large body answers and closes: read its answer
            reply, keep = await self._read(conn.reader)
            done = keep
            return reply
        finally:
            if done:
                self._idle.append(conn)
            else:
                conn.close()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[Reply, bool]:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise HttpError("truncated response head") from None
            raise HttpError("no response (connection closed)", answered=False) from None
        except asyncio.LimitOverrunError:
            raise HttpError("response head too large") from None
        except OSError as e:
            raise HttpError(f"no response ({e})", answered=False) from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1 response: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            body, framed = await self._body(reader, headers)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError):
            raise HttpError("truncated or malformed response body") from None
        keep = (framed and version == "HTTP/1.1"
                and headers.get("connection", "").lower() != "close")
        return Reply(int(code), reason, headers, body), keep

    async def _body(self, reader: asyncio.StreamReader, headers: dict[str, str]
                    ) -> tuple[bytes, bool]:
        """The body and whether its end was framed (else it ran to the connection's end)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    return b"".join(parts), True
                size += n
                self._check(size)
                parts.append(await reader.readexactly(n))
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise HttpError(f"bad Content-Length {length!r}")
            self._check(int(length))
            return await reader.readexactly(int(length)), True
        parts, size = [], 0
        while chunk := await reader.read(2**16):   # to the connection's end
            size += len(chunk)
            self._check(size)
            parts.append(chunk)
        return b"".join(parts), False

    def _check(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise HttpError(f"response of more than max_message_bytes ({self.max_body_bytes})")
