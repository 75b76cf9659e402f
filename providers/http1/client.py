"""HTTPClient: a pool of keep-alive connections to one origin, and one-shot requests over it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from providers.http1.connection import DEFAULT_MAX_LINE_BYTES, Connection, decode_all
from providers.http1.errors import (
    HTTPClientError,
    HTTPConnectError,
    HTTPReadError,
    HTTPTimeout,
)
from providers.http1.stream import StreamContext


class Response:
    """A complete answer: status, headers with lowercase names (the last of repeated ones), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status}, {len(self.body)} bytes>"


def parse_base_url(base_url: str) -> tuple[str, str, int, str, bool]:
    """(host, host header, port, path prefix, tls) of an http(s) base URL."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"base URL may not carry a query, fragment or credentials: {base_url!r}")
    tls = scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if tls else 80)
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None and port != (443 if tls else 80):
        host_header += f":{port}"
    prefix = parts.path.rstrip("/")
    if any(c in prefix for c in " \r\n\t"):
        raise ValueError(f"base URL path has whitespace: {base_url!r}")
    return host, host_header, port, prefix, tls


class HTTPClient:
    """Pooled keep-alive HTTP/1.1 to one origin. Create it inside the event loop that will use it."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 100,
        connect_timeout_s: float = 5.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        keepalive_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._host, host_header, self._port, self._prefix, tls = parse_base_url(base_url)
        self._origin = f"{'https' if tls else 'http'}://{host_header}"
        self._host_line = f"host: {host_header}\r\n"
        self._ssl: ssl.SSLContext | None = (ssl_context or ssl.create_default_context()) if tls else None
        self._max = max_connections
        self._connect_timeout = connect_timeout_s
        self._max_response = max_response_bytes
        self._max_line = max_line_bytes
        self._keepalive = keepalive_s
        self._idle: collections.deque[Connection] = collections.deque()
        self._conns: set[Connection] = set()
        self._in_use = 0
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_use(self) -> int:
        """Connection slots taken right now (for tests and metrics)."""
        return self._in_use

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def _encode(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._host_line}"
            f"content-length: {len(body)}\r\n{lines}\r\n"
        )
        n = len(headers) + 4  # the request line, host, content-length, the headers, the blank line
        if head.count("\n") != n or head.count("\r") != n:
            raise ValueError("newline in a header or the path")
        return head.encode() + body

    # -- slots and connections ------------------------------------------------------------------------

    async def _wait_slot(self, deadline: float) -> None:
        """Queue for a connection slot (first come, first served) until `deadline`."""
        if self._closed:
            raise HTTPClientError("the client is closed")
        fut = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(fut)
        try:
            async with asyncio.timeout_at(deadline):
                await fut
        except BaseException as exc:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release()  # the slot was handed over as we gave up: pass it on
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(fut)
            if isinstance(exc, TimeoutError) and not isinstance(exc, HTTPClientError):
                raise HTTPTimeout(f"no free connection to {self._origin} in time") from None
            raise

    def _release(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next waiter
                return
        self._in_use -= 1

    def _take_idle(self, now: float) -> Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self._keepalive):
                return conn
            conn.close()
        return None

    def _finish(self, conn: Connection, reusable: bool) -> None:
        """Pool the connection if it may carry another request, else close it."""
        if reusable and not self._closed and not conn.broken and not conn.lost:
            now = conn.loop.time()
            conn.active = False
            conn.idle_since = now
            idle = self._idle
            idle.append(conn)
            oldest = idle[0]
            if oldest.lost or now - oldest.idle_since > self._keepalive:
                idle.popleft()
                oldest.close()
        else:
            conn.close()

    async def _connect(self, deadline: float) -> Connection:
        if self._closed:
            raise HTTPClientError("the client is closed")
        loop = asyncio.get_running_loop()
        registry = self._conns
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, registry),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise HTTPTimeout(f"could not connect to {self._origin} in time") from None
        except (OSError, ValueError) as exc:  # ssl.CertificateError is a ValueError
            raise HTTPConnectError(
                f"could not connect to {self._origin} ({type(exc).__name__}: {exc})"
            ) from exc
        return conn

    # -- requests -------------------------------------------------------------------------------------

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float
    ) -> Response:
        """Send one request and read the whole answer, all within `timeout_s` (connect within the client's
        connect timeout). Raises ResponseTooLarge past `max_response_bytes`."""
        data = self._encode(method, path, body, headers)
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + timeout_s
        if self._in_use < self._max and not self._slot_waiters and not self._closed:
            self._in_use += 1
        else:
            await self._wait_slot(min(deadline, now + self._connect_timeout))
        try:
            conn = self._take_idle(now)
            for reused in (conn is not None, False):
                if conn is None:
                    conn = await self._connect(min(deadline, loop.time() + self._connect_timeout))
                try:
                    await conn.send(data, False, self._max_response, deadline)
                except HTTPReadError as exc:
                    conn.close()
                    if reused and exc.before_response:
                        conn = None  # a stale pooled connection; the server never saw this request
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                body_out = conn.parts[0] if len(conn.parts) == 1 else b"".join(conn.parts)
                response = Response(conn.status, conn.headers, body_out)
                self._finish(conn, conn.keep_alive)
                if conn.encoding is not None:
                    response.body = decode_all(conn.encoding, body_out, self._max_response)
                return response
            raise AssertionError("unreachable")
        finally:
            self._release()

    def stream(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        read_timeout_s: float,
        connect_timeout_s: float | None = None,
    ) -> StreamContext:
        """`async with client.stream(...) as resp:` -- the head first, then `resp.read()` or `async for line
        in resp`. Each wait for data (the head included) is bounded by `read_timeout_s`."""
        data = self._encode(method, path, body, headers)
        connect = self._connect_timeout if connect_timeout_s is None else connect_timeout_s
        return StreamContext(self, data, connect, read_timeout_s)

    async def _open_stream(self, data: bytes, connect_timeout_s: float, read_timeout_s: float) -> Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._in_use < self._max and not self._slot_waiters and not self._closed:
            self._in_use += 1
        else:
            await self._wait_slot(now + connect_timeout_s)
        try:
            conn = self._take_idle(now)
            for reused in (conn is not None, False):
                if conn is None:
                    conn = await self._connect(loop.time() + connect_timeout_s)
                try:
                    await conn.send(data, True, self._max_response, loop.time() + read_timeout_s)
                except HTTPReadError as exc:
                    conn.close()
                    if reused and exc.before_response:
                        conn = None
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                return conn
            raise AssertionError("unreachable")
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        """Close every connection, idle or not; later requests raise HTTPClientError."""
        self._closed = True
        self._idle.clear()
        while self._slot_waiters:
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_exception(HTTPClientError("the client is closed"))
        conns = list(self._conns)
        for conn in conns:
            conn.close()
        await asyncio.sleep(0)
        for _ in range(100):  # TLS transports take a few loop turns to finish closing (bounded)
            if not self._conns:
                break
            await asyncio.sleep(0.005)
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()
