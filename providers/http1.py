"""A small pooled keep-alive HTTP/1.1 client for upstream calls: asyncio Protocols plus httptools' C parser.

Why not aiohttp: profiling the gateway put about a quarter of its event-loop CPU per proxied request in
aiohttp's client machinery (ClientSession._request, ClientRequest/ClientResponse objects, timer contexts,
tracing hooks, the cookie jar, the connector's bookkeeping), none of which an OpenAI-style JSON/SSE upstream
needs. This client does the minimum per request: the request is one bytes object built by one f-string and
sent with one `transport.write`; httptools parses the answer through callbacks on the connection's
protocol; one future resolves when the message is complete; one timer handle per connection (re-armed
lazily, not created per request) bounds the wait.

What it does, and no more:

* `HTTPClient(base_url, ...)`: one per upstream origin; http:// and https://, IPv4, IPv6 and host names
  (resolved by `loop.create_connection`); `base_url` may carry a path prefix.
* A LIFO pool of idle keep-alive connections; at most `max_connections` in use, waiters served first come
  first served. A connection returns to the pool only when its answer was read completely, the server
  kept it alive and nothing unread is left; anything else (errors, timeouts, cancellation, an abandoned
  stream) closes it.
* A pooled connection the server closed while idle never fails a request: if a *reused* connection dies
  before a single byte of the answer arrived, the request is sent once more on a fresh connection.
* `request()`: the whole answer (content-length, chunked or close-delimited; gzip/deflate decoded), refused
  past `max_response_bytes`. `stream()`: status and headers, then `read()` or body lines, every wait
  bounded by a per-read stall timeout, with transport backpressure.
* Every failure is one of the `HTTPClientError` classes below; no OSError or parser error leaks out.

Not supported (nothing here needs it): redirects, proxies, cookies, HEAD, `Expect: 100-continue`, upgrades.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import zlib
from collections.abc import Mapping
from types import TracebackType
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "HTTPClient",
    "HTTPClientError",
    "HTTPConnectError",
    "HTTPProtocolError",
    "HTTPReadError",
    "HTTPTimeout",
    "LineTooLong",
    "Response",
    "ResponseTooLarge",
    "StreamResponse",
]

MAX_HEAD_BYTES: Final = 64 * 1024  # status line plus headers
STREAM_HIGH_WATER: Final = 256 * 1024  # buffered, unread stream bytes before reading pauses
# aiohttp refuses a body line longer than twice its 256 KiB read buffer; so do we, by default.
DEFAULT_MAX_LINE_BYTES: Final = 512 * 1024
MAX_DECODED_CHUNK: Final = 32 * 1024 * 1024  # one compressed network read may not expand past this
_TIMER_SLACK: Final = 0.001  # loop timers may fire a hair early; earlier than this re-arms


class HTTPClientError(Exception):
    """Base of every error this client raises."""


class HTTPConnectError(HTTPClientError):
    """No connection: refused, unreachable, name not resolved, TLS handshake failed."""


class HTTPReadError(HTTPClientError):
    """The connection closed or broke while the request was sent or its answer was read."""

    def __init__(self, message: str, *, before_response: bool = False) -> None:
        super().__init__(message)
        # True when not one byte of the answer arrived (the case a stale pooled connection produces).
        self.before_response = before_response


class HTTPProtocolError(HTTPClientError):
    """The answer is not valid HTTP/1.1 (or uses a content-encoding we cannot decode)."""


class HTTPTimeout(HTTPClientError, TimeoutError):
    """A connect, total or per-read deadline passed."""


class ResponseTooLarge(HTTPClientError):
    """The body is larger than the client's `max_response_bytes` (declared or counted)."""


class LineTooLong(HTTPClientError):
    """A streamed body line is longer than `max_line_bytes`."""


class _TrailingData(HTTPClientError):
    """Bytes after a complete answer: the connection cannot be reused."""


class Response:
    """A complete answer: status, headers with lowercase names (the last of repeated ones), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status}, {len(self.body)} bytes>"


class _Decoder:
    """Incremental gzip/deflate decoding; "deflate" bodies may come zlib-wrapped or raw (both are seen)."""

    __slots__ = ("_deflate", "_obj")

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._obj: zlib._Decompress | None = None  # made on the first byte (an empty body is no error)

    def decode(self, data: bytes, max_out: int) -> bytes:
        """Up to `max_out` decoded bytes from `data`; more than that raises ResponseTooLarge."""
        obj = self._obj
        if obj is None:
            if not data:
                return b""
            if not self._deflate:
                wbits = 16 + zlib.MAX_WBITS
            else:
                wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            obj = self._obj = zlib.decompressobj(wbits)
        try:
            out = obj.decompress(data, max_out + 1)
        except zlib.error as exc:
            raise HTTPProtocolError(f"body does not decode: {exc}") from None
        if len(out) > max_out or obj.unconsumed_tail:
            raise ResponseTooLarge(f"decoded body larger than {max_out} bytes")
        return out

    def finish(self) -> bytes:
        obj = self._obj
        if obj is None:
            return b""
        try:
            out = obj.flush()
        except zlib.error as exc:
            raise HTTPProtocolError(f"body does not decode: {exc}") from None
        if not obj.eof:
            raise HTTPProtocolError("compressed body is truncated")
        return out


class _Conn(asyncio.Protocol):
    """One connection. Parser callbacks fill the current answer and wake whoever waits on `waiter`.

    Request mode wakes once, when the message is complete; stream mode wakes when the headers are in and
    then whenever body bytes arrive (or the body ends), so the reader can take lines off `buf`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[_Conn]) -> None:
        self.loop = loop
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.broken = False  # must not be reused
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.buf = bytearray()  # stream mode: decoded body bytes not yet taken by the reader
        self._reset(False, 0)

    def _reset(self, streaming: bool, limit: int) -> None:
        self.streaming = streaming
        self.limit = limit
        self.active = False  # an answer is expected
        self.received = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_size = 0
        self.head_done = False
        self.informational = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False
        self.parts: list[bytes] = []
        self.size = 0
        self.error: HTTPClientError | None = None
        self.decoder: _Decoder | None = None
        self.encoding: str | None = None

    # -- driven by the client -------------------------------------------------------------------------

    def send(self, data: bytes, streaming: bool, limit: int, deadline: float) -> asyncio.Future[None]:
        """Write a request; the future resolves when the answer is complete (or its head, when streaming)."""
        transport = self.transport
        if self.lost or self.broken or transport is None or transport.is_closing():
            raise HTTPReadError("the connection closed while idle", before_response=True)
        self._reset(streaming, limit)
        try:
            transport.write(data)
        except (OSError, RuntimeError) as exc:
            self.broken = True
            raise HTTPReadError(f"write failed ({type(exc).__name__})", before_response=True) from None
        self.active = True
        fut = self.loop.create_future()
        self.waiter = fut
        self.arm(deadline)
        return fut

    def arm(self, deadline: float) -> None:
        """Time out the current waiter at `deadline`; one timer per connection, re-armed if it fires early."""
        self.deadline = deadline
        timer = self.timer
        if timer is None or self.timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.deadline - self.loop.time() > _TIMER_SLACK:
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        self._fail(HTTPTimeout("timed out waiting for the server"))

    def wait_more(self, deadline: float) -> asyncio.Future[None]:
        """A future for the next stream event (data, end, error); reading resumes if it was paused."""
        fut = self.loop.create_future()
        self.waiter = fut
        if self.paused:
            self.paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        self.arm(deadline)
        return fut

    def reusable(self, now: float, keepalive_s: float) -> bool:
        transport = self.transport
        return (
            not self.lost
            and not self.broken
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since <= keepalive_s
        )

    def close(self) -> None:
        """Close for good; nobody waits on this connection any more."""
        self.broken = True
        self.active = False
        self.waiter = None
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, exc: HTTPClientError) -> None:
        if self.error is None:
            self.error = exc
        self.broken = True
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport, so no isinstance check here).
        self.transport = cast("asyncio.Transport", transport)
        self.registry.add(self)

    def data_received(self, data: bytes) -> None:
        if not self.active:  # a server must not talk out of turn
            self.broken = True
            if self.transport is not None:
                self.transport.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__
            if self.complete:  # the answer is whole; whatever followed it spoils only reuse
                self.broken = True
                if self.transport is not None:
                    self.transport.close()
                return
            if isinstance(cause, HTTPClientError):
                self._fail(cause)
            else:
                self._fail(HTTPProtocolError(f"malformed HTTP answer ({exc})"))
            return
        if not self.head_done and self.received > MAX_HEAD_BYTES:
            self._fail(HTTPProtocolError(f"answer head larger than {MAX_HEAD_BYTES} bytes"))
        elif self.streaming and not self.paused and len(self.buf) > STREAM_HIGH_WATER and self.waiter is None:
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.registry.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.active or self.complete or self.error is not None:
            return
        if self.head_done and self.until_eof and exc is None:
            try:
                self._end_of_body()  # a close-delimited body ends here
            except HTTPClientError as err:
                self._fail(err)
            return
        if self.received == 0:
            self._fail(HTTPReadError("the server closed the connection unanswered", before_response=True))
        else:
            what = "before the answer's head" if not self.head_done else "mid-body"
            reason = f" ({type(exc).__name__})" if exc is not None else ""
            self._fail(HTTPReadError(f"the connection closed {what}{reason}"))

    # -- httptools callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _TrailingData("bytes after a complete answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD_BYTES:
            raise HTTPProtocolError(f"answer head larger than {MAX_HEAD_BYTES} bytes")
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim 1xx answer; the real one follows
            self.informational = True
            self.headers = {}
            return
        self.status = status
        self.head_done = True
        headers = self.headers
        length = headers.get("content-length")
        if length is None and status not in (204, 304):
            te = headers.get("transfer-encoding")
            self.until_eof = te is None or not te.rstrip().lower().endswith("chunked")
        encoding = headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in ("gzip", "x-gzip", "deflate"):
                self.encoding = "deflate" if encoding == "deflate" else "gzip"
            elif encoding and encoding != "identity":
                raise HTTPProtocolError(f"unsupported content-encoding {encoding!r}")
        if self.streaming:
            if self.encoding is not None:
                self.decoder = _Decoder(self.encoding)
            self._wake()
        elif length is not None and int(length) > self.limit:
            raise ResponseTooLarge(f"answer declares {length} bytes, more than {self.limit}")

    def on_body(self, body: bytes) -> None:
        if self.streaming:
            if self.decoder is not None:
                body = self.decoder.decode(body, MAX_DECODED_CHUNK)
            self.buf += body
            self._wake()
        else:
            self.size += len(body)
            if self.size > self.limit:
                raise ResponseTooLarge(f"answer larger than {self.limit} bytes")
            self.parts.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.keep_alive = self.parser.should_keep_alive()
        if self.decoder is not None:
            self._end_of_body()
            return
        self.complete = True
        self._wake()

    def _end_of_body(self) -> None:
        if self.decoder is not None:
            self.buf += self.decoder.finish()
        self.complete = True
        self._wake()


def _parse_base_url(base_url: str) -> tuple[str, str, int, str, bool]:
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


def _decode_all(encoding: str, body: bytes, limit: int) -> bytes:
    decoder = _Decoder(encoding)
    out = decoder.decode(body, limit)
    out += decoder.finish()
    if len(out) > limit:
        raise ResponseTooLarge(f"decoded answer larger than {limit} bytes")
    return out


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
        self._host, host_header, self._port, self._prefix, tls = _parse_base_url(base_url)
        self._origin = f"{'https' if tls else 'http'}://{host_header}"
        self._host_line = f"host: {host_header}\r\n"
        self._ssl: ssl.SSLContext | None = (ssl_context or ssl.create_default_context()) if tls else None
        self._max = max_connections
        self._connect_timeout = connect_timeout_s
        self._max_response = max_response_bytes
        self._max_line = max_line_bytes
        self._keepalive = keepalive_s
        self._idle: collections.deque[_Conn] = collections.deque()
        self._conns: set[_Conn] = set()
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

    def _take_idle(self, now: float) -> _Conn | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self._keepalive):
                return conn
            conn.close()
        return None

    def _finish(self, conn: _Conn, reusable: bool) -> None:
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

    async def _connect(self, deadline: float) -> _Conn:
        if self._closed:
            raise HTTPClientError("the client is closed")
        loop = asyncio.get_running_loop()
        registry = self._conns
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop, registry),
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
                    response.body = _decode_all(conn.encoding, body_out, self._max_response)
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
    ) -> _StreamContext:
        """`async with client.stream(...) as resp:` -- the head first, then `resp.read()` or `async for line
        in resp`. Each wait for data (the head included) is bounded by `read_timeout_s`."""
        data = self._encode(method, path, body, headers)
        connect = self._connect_timeout if connect_timeout_s is None else connect_timeout_s
        return _StreamContext(self, data, connect, read_timeout_s)

    async def _open_stream(self, data: bytes, connect_timeout_s: float, read_timeout_s: float) -> _Conn:
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


class _StreamContext:
    __slots__ = ("_client", "_connect_timeout", "_data", "_read_timeout", "_response")

    def __init__(
        self, client: HTTPClient, data: bytes, connect_timeout_s: float, read_timeout_s: float
    ) -> None:
        self._client = client
        self._data = data
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._response: StreamResponse | None = None

    async def __aenter__(self) -> StreamResponse:
        client = self._client
        conn = await client._open_stream(self._data, self._connect_timeout, self._read_timeout)
        self._response = StreamResponse(conn, self._read_timeout, client._max_line, client._max_response)
        return self._response

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        response = self._response
        if response is None:
            return
        self._response = None
        conn = response._detach()
        if conn is None:
            return
        done = et is None and conn.complete and conn.keep_alive and conn.error is None
        if done:
            # The answer is whole, so the connection is clean: body bytes the reader chose not to take
            # (the blank line after an SSE `[DONE]`) are dropped rather than costing a new connection.
            conn.buf.clear()
            if conn.paused and conn.transport is not None:
                conn.paused = False
                conn.transport.resume_reading()
        try:
            self._client._finish(conn, done)
        finally:
            self._client._release()


class StreamResponse:
    """A streamed answer: `status`, `headers` (lowercase names), then `await read()` or `async for line`.

    Lines keep their trailing b"\\n" (the last one may have none); a line longer than `max_line_bytes`
    raises LineTooLong. Buffered lines are handed out before a later connection error is raised.
    """

    __slots__ = (
        "_conn",
        "_limit",
        "_loop",
        "_max_line",
        "_pos",
        "_read_timeout",
        "_scan",
        "headers",
        "status",
    )

    def __init__(
        self, conn: _Conn, read_timeout_s: float, max_line_bytes: int, max_response_bytes: int
    ) -> None:
        self._conn: _Conn | None = conn
        self._loop = conn.loop
        self._read_timeout = read_timeout_s
        self._max_line = max_line_bytes
        self._limit = max_response_bytes
        self._pos = 0  # start of unread bytes in conn.buf
        self._scan = 0  # where the next newline search starts
        self.status = conn.status
        self.headers = conn.headers

    def _detach(self) -> _Conn | None:
        conn, self._conn = self._conn, None
        return conn

    def _live(self) -> _Conn:
        conn = self._conn
        if conn is None:
            raise HTTPClientError("the stream is closed")
        return conn

    async def _more(self, conn: _Conn) -> bool:
        """Wait for more body bytes; False once the body has ended."""
        if conn.error is not None:
            raise conn.error
        if conn.complete:
            return False
        buf = conn.buf
        if self._pos:  # drop what was read before waiting, so the buffer holds only unread bytes
            del buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        await conn.wait_more(self._loop.time() + self._read_timeout)
        return True

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body; more than `limit` (default: the client's max_response_bytes) raises."""
        limit = self._limit if limit is None else limit
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ResponseTooLarge(f"answer declares {length} bytes, more than {limit}")
        conn = self._live()
        parts: list[bytes] = []
        size = 0
        while True:
            buf = conn.buf
            if len(buf) > self._pos:
                part = bytes(buf[self._pos :])
                buf.clear()
                self._pos = self._scan = 0
                size += len(part)
                if size > limit:
                    raise ResponseTooLarge(f"answer larger than {limit} bytes")
                parts.append(part)
            if not await self._more(conn):
                return b"".join(parts)

    def __aiter__(self) -> StreamResponse:
        return self

    async def __anext__(self) -> bytes:
        conn = self._live()
        buf = conn.buf
        while True:
            i = buf.find(b"\n", self._scan)
            if i >= 0:
                pos = self._pos
                end = i + 1
                if end - pos > self._max_line:
                    raise LineTooLong(f"body line longer than {self._max_line} bytes")
                line = bytes(buf[pos:end])
                if end == len(buf):
                    buf.clear()
                    self._pos = self._scan = 0
                else:
                    self._pos = self._scan = end
                return line
            if len(buf) - self._pos > self._max_line:
                raise LineTooLong(f"body line longer than {self._max_line} bytes")
            self._scan = len(buf)
            if not await self._more(conn):
                if len(buf) > self._pos:
                    line = bytes(buf[self._pos :])
                    buf.clear()
                    self._pos = self._scan = 0
                    return line
                raise StopAsyncIteration
