"""providers/http1/ against real loopback servers: pooling, framing, decoding, failures, timeouts, streams.

Each test starts its own raw asyncio HTTP server (`Upstream`), which answers every request with a
scripted handler that writes bytes straight to the socket -- so malformed answers, resets and stalls are
real. Every wait is bounded, and every server is stopped (its connections aborted) when the test ends.
The scenarios run on asyncio's loop through pytest-asyncio and once more on uvloop (the server's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
import uvloop

from providers.http1 import (
    HTTPClient,
    HTTPClientError,
    HTTPConnectError,
    HTTPProtocolError,
    HTTPReadError,
    HTTPTimeout,
    LineTooLong,
    ResponseTooLarge,
)


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    conn: int  # which accepted connection (1-based) carried it
    nth: int  # its position on that connection (1-based)


Handler = Callable[[asyncio.StreamWriter, Request], Awaitable[bool]]  # returns: keep the connection open


@dataclass
class Upstream:
    handler: Handler
    host: str = "127.0.0.1"
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0
    open: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "") -> str:
        scheme = "https" if self.ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    async def until(self, done: Callable[[], bool], timeout: float = 2.0) -> None:
        """Wait until `done()` holds; it is checked whenever a request arrives or a connection ends."""
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed_by_client(self, timeout: float = 2.0) -> None:
        """Until the server has no open connection (the client closed them all)."""
        await self.until(lambda: self.open == 0, timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        self.open += 1
        conn, nth = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                nth += 1
                request = Request(method, target, headers, body, conn, nth)
                self.requests.append(request)
                self._changed.set()
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep = await self._answer(reader, writer, request)
                finally:
                    self.in_flight -= 1
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ends a handler still sleeping; asyncio's server would log a cancelled task
        finally:
            self.open -= 1
            self._changed.set()
            self._writers.discard(writer)
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.transport.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: Request) -> bool:
        """Run the handler while watching for the client closing (a hanging handler then ends at once)."""
        handling = asyncio.create_task(self._handle(writer, req))
        closed = asyncio.create_task(reader.read(1))  # our client never sends before the answer is done
        try:
            await asyncio.wait([handling, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (handling, closed):
                t.cancel()
            await asyncio.wait([handling, closed])
        if handling.cancelled() or handling.exception() is not None:
            return False
        return handling.result()

    async def _handle(self, writer: asyncio.StreamWriter, req: Request) -> bool:
        keep = await self.handler(writer, req)
        await writer.drain()
        return keep


@contextlib.asynccontextmanager
async def upstream(
    handler: Handler, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Upstream]:
    server = await Upstream(handler, host=host, ssl_context=ssl_context).start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def client_for(server: Upstream, path: str = "", **kw: Any) -> AsyncIterator[HTTPClient]:
    client = HTTPClient(server.url(path), **{"connect_timeout_s": 2.0, **kw})
    try:
        yield client
    finally:
        await client.aclose()


def answer(body: bytes = b"ok", status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def echo(writer: asyncio.StreamWriter, req: Request) -> bool:
    writer.write(answer(req.body, headers={"X-Target": req.target, "X-Conn": str(req.conn)}))
    return True


async def post(client: HTTPClient, body: bytes = b"{}", timeout_s: float = 2.0, path: str = "/x") -> bytes:
    resp = await client.request("POST", path, body, {"content-type": "application/json"}, timeout_s=timeout_s)
    assert resp.status == 200, resp
    return resp.body


# --- pooling --------------------------------------------------------------------------------------------


async def test_keepalive_reuses_one_connection_and_sends_one_clean_request() -> None:
    async with upstream(echo) as server, client_for(server, "/plain/v1/") as client:
        for i in range(20):
            resp = await client.request(
                "POST", "/chat/completions", f"body {i}".encode(), {"X-Request-Id": f"r{i}"}, timeout_s=2
            )
            assert (resp.status, resp.body) == (200, f"body {i}".encode())
            assert resp.headers["x-target"] == "/plain/v1/chat/completions"  # names come lowercase
        assert server.connections == 1
        assert client.idle_connections == 1 and client.in_use == 0
        req = server.requests[-1]
        assert req.method == "POST" and req.headers["host"] == f"127.0.0.1:{server.port}"
        assert req.headers["content-length"] == "7" and req.headers["x-request-id"] == "r19"


async def test_pool_limit_holds_under_50_concurrent_requests() -> None:
    async def slow(writer: asyncio.StreamWriter, req: Request) -> bool:
        await asyncio.sleep(0.01)
        writer.write(answer(req.body))
        return True

    async with upstream(slow) as server, client_for(server, max_connections=5) as client:
        async with asyncio.timeout(10):
            bodies = await asyncio.gather(*[post(client, str(i).encode()) for i in range(50)])
        assert bodies == [str(i).encode() for i in range(50)]
        assert server.max_in_flight <= 5 and server.connections <= 5
        assert client.in_use == 0 and client.idle_connections == server.connections


async def test_pool_slot_wait_times_out() -> None:
    async def hang(writer: asyncio.StreamWriter, req: Request) -> bool:
        await asyncio.sleep(5)
        return False

    async with upstream(hang) as server, client_for(server, max_connections=1) as client:
        first = asyncio.create_task(post(client, timeout_s=3))
        await server.until(lambda: bool(server.requests))
        t0 = time.monotonic()
        with pytest.raises(HTTPTimeout):
            await post(client, timeout_s=0.2)
        assert time.monotonic() - t0 < 1.0
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert client.in_use == 0


# --- framing and decoding -------------------------------------------------------------------------------


async def test_chunked_body() -> None:
    async def chunked(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"hel", b"lo ", b"world"):
            writer.write(chunk(part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        return True

    async with upstream(chunked) as server, client_for(server) as client:
        assert await post(client) == b"hello world"
        assert await post(client) == b"hello world"
        assert server.connections == 1


async def test_close_delimited_body_is_read_to_eof_and_not_pooled() -> None:
    async def until_close(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst part, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"second part")
        return False

    async with upstream(until_close) as server, client_for(server) as client:
        assert await post(client) == b"first part, second part"
        assert client.idle_connections == 0
        assert await post(client) == b"first part, second part"
        assert server.connections == 2


async def test_gzip_and_deflate_bodies_are_decoded() -> None:
    plain = b'{"hello": "world"}' * 100
    encodings = {
        "gzip": gzip.compress(plain),
        "deflate": zlib.compress(plain),  # zlib-wrapped, as the RFC says
        "Deflate": zlib.compress(plain)[2:-4],  # raw deflate, as some servers send it
    }

    async def compressed(writer: asyncio.StreamWriter, req: Request) -> bool:
        enc = req.body.decode()
        writer.write(answer(encodings[enc], headers={"content-encoding": enc}))
        return True

    async with upstream(compressed) as server, client_for(server) as client:
        for enc in encodings:
            assert await post(client, enc.encode()) == plain
        assert server.connections == 1


async def test_interim_100_answer_is_skipped() -> None:
    async def interim(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final"))
        return True

    async with upstream(interim) as server, client_for(server) as client:
        assert await post(client) == b"final"


async def test_bytes_after_a_complete_answer_stop_reuse() -> None:
    async def trailing(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(answer(b"ok") + b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        return True

    async with upstream(trailing) as server, client_for(server) as client:
        assert await post(client) == b"ok"
        assert await post(client) == b"ok"
        assert server.connections == 2


async def test_connection_close_header_is_honoured() -> None:
    async def closing(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(answer(b"ok", headers={"connection": "close"}))
        return True  # the server would keep it; the client must not

    async with upstream(closing) as server, client_for(server) as client:
        assert await post(client) == b"ok"
        assert await post(client) == b"ok"
        assert server.connections == 2
        await server.wait_closed_by_client()


# --- stale connections and failures ---------------------------------------------------------------------


async def test_idle_connection_closed_by_server_is_not_reused() -> None:
    async def once(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(answer(b"ok"))  # says keep-alive, then closes while the client holds it idle
        return False

    async with upstream(once) as server, client_for(server) as client:
        assert await post(client) == b"ok"
        await asyncio.sleep(0.05)
        assert await post(client) == b"ok"
        assert server.connections == 2 and len(server.requests) == 2


async def test_reused_connection_dying_before_the_answer_is_retried_once_on_a_fresh_one() -> None:
    async def second_dies(writer: asyncio.StreamWriter, req: Request) -> bool:
        if req.nth == 2:  # the race a stale keep-alive connection loses: request sent, no answer
            rst(writer)
            return False
        writer.write(answer(b"ok"))
        return True

    async with upstream(second_dies) as server, client_for(server) as client:
        assert await post(client) == b"ok"
        assert await post(client) == b"ok"  # died on connection 1, answered on connection 2
        assert server.connections == 2
        assert [(r.conn, r.nth) for r in server.requests] == [(1, 1), (1, 2), (2, 1)]


async def test_fresh_connection_reset_before_first_byte_fails_without_retry() -> None:
    async def reset(writer: asyncio.StreamWriter, req: Request) -> bool:
        rst(writer)
        return False

    async with upstream(reset) as server, client_for(server) as client:
        with pytest.raises(HTTPReadError) as info:
            await post(client)
        assert info.value.before_response
        assert len(server.requests) == 1
        assert client.in_use == 0 and client.idle_connections == 0


async def test_reset_mid_body() -> None:
    async def cut(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 100)
        await writer.drain()
        await asyncio.sleep(0.02)
        rst(writer)
        return False

    async with upstream(cut) as server, client_for(server) as client:
        with pytest.raises(HTTPReadError) as info:
            await post(client)
        assert not info.value.before_response
        assert len(server.requests) == 1


async def test_eof_mid_body_is_a_read_error() -> None:
    async def short(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 100)
        return False  # a clean FIN, 900 bytes short

    async with upstream(short) as server, client_for(server) as client:
        with pytest.raises(HTTPReadError):
            await post(client)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 5\r\n\r\nnotgz",
    ],
    ids=["bad-status", "garbage", "bad-framing", "unknown-encoding", "bad-gzip"],
)
async def test_malformed_answers_are_protocol_errors(raw: bytes) -> None:
    async def bad(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.5)  # keep it open: the client must not wait for more
        return False

    async with upstream(bad) as server, client_for(server) as client:
        with pytest.raises(HTTPProtocolError):
            await post(client)
        assert client.in_use == 0


async def test_oversized_head_is_a_protocol_error() -> None:
    async def huge_head(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"a" * 100_000 + b"\r\n\r\n")
        return False

    async with upstream(huge_head) as server, client_for(server) as client:
        with pytest.raises(HTTPProtocolError):
            await post(client)


async def test_connection_refused_is_a_connect_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = HTTPClient(f"http://127.0.0.1:{port}/v1", connect_timeout_s=1)
    try:
        with pytest.raises(HTTPConnectError):
            await post(client)
        assert client.in_use == 0
    finally:
        await client.aclose()


async def test_connect_timeout() -> None:
    # A listener with a full, never-drained accept queue: connects hang (as FaultProxy.blackhole does).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    client = HTTPClient(f"http://127.0.0.1:{port}", connect_timeout_s=0.2)
    try:
        t0 = time.monotonic()
        with pytest.raises(HTTPTimeout):
            await post(client, timeout_s=5)
        assert time.monotonic() - t0 < 1.5
        assert client.in_use == 0
    finally:
        await client.aclose()
        for s in [listener, *fillers]:
            s.close()


# --- limits and timeouts --------------------------------------------------------------------------------


async def test_response_too_large_declared_and_counted() -> None:
    async def big(writer: asyncio.StreamWriter, req: Request) -> bool:
        if req.body == b"declared":
            writer.write(answer(b"x" * 5000))
        elif req.body == b"counted":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(10):
                writer.write(chunk(b"y" * 500))
            writer.write(b"0\r\n\r\n")
        elif req.body == b"bomb":
            writer.write(answer(gzip.compress(b"z" * 100_000), headers={"content-encoding": "gzip"}))
        else:
            writer.write(answer(b"x" * 1024))  # exactly the limit is fine
        return True

    async with upstream(big) as server, client_for(server, max_response_bytes=1024) as client:
        for kind in (b"declared", b"counted", b"bomb"):
            with pytest.raises(ResponseTooLarge):
                await post(client, kind)
        assert await post(client, b"fits") == b"x" * 1024


async def test_total_timeout_closes_the_connection() -> None:
    async def slow(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")  # head and part of the body
        await writer.drain()
        await asyncio.sleep(5)
        return False

    async with upstream(slow) as server, client_for(server) as client:
        t0 = time.monotonic()
        with pytest.raises(HTTPTimeout) as info:
            await post(client, timeout_s=0.3)
        assert isinstance(info.value, TimeoutError)
        assert 0.25 < time.monotonic() - t0 < 1.0
        assert client.in_use == 0 and client.idle_connections == 0
        await server.wait_closed_by_client()


async def test_cancellation_closes_the_connection_and_frees_the_slot() -> None:
    mode = {"hang": True}

    async def maybe_hang(writer: asyncio.StreamWriter, req: Request) -> bool:
        if mode["hang"]:
            await asyncio.sleep(5)
            return False
        writer.write(answer(b"ok"))
        return True

    async with upstream(maybe_hang) as server, client_for(server, max_connections=1) as client:
        task = asyncio.create_task(post(client, timeout_s=10))
        await server.until(lambda: bool(server.requests))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.in_use == 0 and client.idle_connections == 0
        await server.wait_closed_by_client()
        mode["hang"] = False
        assert await post(client) == b"ok"


async def test_requests_after_aclose_fail() -> None:
    async with upstream(echo) as server:
        client = HTTPClient(server.url())
        assert await post(client) == b"{}"
        await client.aclose()
        await server.wait_closed_by_client()
        with pytest.raises(HTTPClientError):
            await post(client)


async def test_newline_in_a_header_is_refused() -> None:
    client = HTTPClient("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="newline"):
        await client.request("POST", "/x", b"", {"x-evil": "a\r\nx-injected: 1"}, timeout_s=1)
    await client.aclose()


# --- TLS and IPv6 ---------------------------------------------------------------------------------------


async def test_https_with_a_custom_context() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with upstream(echo, ssl_context=server_ctx) as server:
        assert server.url().startswith("https://")
        async with client_for(server, "/v1", ssl_context=client_ctx) as client:
            assert await post(client, b"secret") == b"secret"
            assert await post(client, b"again") == b"again"
            assert server.connections == 1
        # The default context does not trust the test CA: a connect error, not a raw ssl error.
        async with client_for(server, "/v1") as untrusting:
            with pytest.raises(HTTPConnectError):
                await post(untrusting)


async def test_ipv6_loopback() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with upstream(echo, host="::1") as server, client_for(server, "/v1") as client:
        assert await post(client, b"six") == b"six"
        assert server.requests[0].headers["host"] == f"[::1]:{server.port}"


# --- streams --------------------------------------------------------------------------------------------


def sse_head(status: int = 200) -> bytes:
    return f"HTTP/1.1 {status} OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".encode()


async def test_stream_lines_split_across_chunks_and_reuse() -> None:
    async def sse(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(sse_head())
        for piece in (b"data: 1\n\nda", b"ta: 2\n", b"\n: comment\n", b"data: [DONE]\n\nlast"):
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b"0\r\n\r\n")
        return True

    async with upstream(sse) as server, client_for(server) as client:
        for _ in range(2):
            async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=1) as resp:
                assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
                lines = [line async for line in resp]
            assert lines == [
                b"data: 1\n",
                b"\n",
                b"data: 2\n",
                b"\n",
                b": comment\n",
                b"data: [DONE]\n",
                b"\n",
                b"last",
            ]
        assert server.connections == 1  # read to the end: pooled and reused
        assert client.in_use == 0


async def test_stream_left_at_done_is_reused_once_its_answer_is_whole() -> None:
    async def whole(writer: asyncio.StreamWriter, req: Request) -> bool:
        # The whole answer in one write, as a fast upstream sends it: the reader stops at [DONE] and
        # leaves the blank line after it (and the chunked terminator) unread.
        writer.write(sse_head() + chunk(b"data: 1\n\ndata: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True

    async with upstream(whole) as server, client_for(server) as client:
        for _ in range(3):
            async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=1) as resp:
                async for line in resp:
                    if line.startswith(b"data: [DONE]"):
                        break
                await asyncio.sleep(0.05)  # the terminator has arrived by now: the answer is whole
        assert server.connections == 1  # pooled and reused, not a new connection per stream
        assert client.in_use == 0


async def test_stream_line_too_long() -> None:
    async def long_line(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(sse_head() + chunk(b"data: ok\n") + chunk(b"data: " + b"x" * 5000))
        await writer.drain()
        await asyncio.sleep(5)
        return False

    async with upstream(long_line) as server, client_for(server, max_line_bytes=1024) as client:
        with pytest.raises(LineTooLong):
            async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=2) as resp:
                assert await anext(resp) == b"data: ok\n"
                await anext(resp)
        assert client.in_use == 0
        await server.wait_closed_by_client()


async def test_stream_stall_times_out_per_read_not_in_total() -> None:
    async def trickle(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(sse_head())
        for i in range(8):  # 0.8 s in all, never silent for 0.3 s
            writer.write(chunk(f"data: {i}\n".encode()))
            await writer.drain()
            await asyncio.sleep(0.1)
        if req.body == b"stall":
            await asyncio.sleep(5)
        writer.write(b"0\r\n\r\n")
        return True

    async with upstream(trickle) as server, client_for(server) as client:
        async with client.stream("POST", "/s", b"ok", {}, read_timeout_s=0.3) as resp:
            assert len([line async for line in resp]) == 8
        got = []
        t0 = time.monotonic()
        with pytest.raises(HTTPTimeout):
            async with client.stream("POST", "/s", b"stall", {}, read_timeout_s=0.3) as resp:
                async for line in resp:
                    got.append(line)
                    t0 = time.monotonic()
        assert len(got) == 8 and 0.25 < time.monotonic() - t0 < 1.0
        assert client.in_use == 0
        await server.wait_closed_by_client()


async def test_stream_head_wait_is_bounded_by_the_read_timeout() -> None:
    async def silent(writer: asyncio.StreamWriter, req: Request) -> bool:
        await asyncio.sleep(5)
        return False

    async with upstream(silent) as server, client_for(server) as client:
        t0 = time.monotonic()
        with pytest.raises(HTTPTimeout):
            async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=0.2):
                pass
        assert time.monotonic() - t0 < 1.0 and client.in_use == 0


async def test_abandoned_stream_closes_its_connection() -> None:
    async def endless(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(sse_head())
        for i in range(100):
            writer.write(chunk(f"data: {i}\n\n".encode()))
            await writer.drain()
            await asyncio.sleep(0.01)
        return False

    async with upstream(endless) as server, client_for(server) as client:
        async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=1) as resp:
            async for line in resp:
                if line.startswith(b"data: 2"):
                    break
        assert client.in_use == 0 and client.idle_connections == 0
        await server.wait_closed_by_client()


async def test_stream_error_body_read_with_a_limit() -> None:
    async def error(writer: asyncio.StreamWriter, req: Request) -> bool:
        body = b'{"error": {"message": "slow down"}}' if req.body == b"small" else b"e" * 3000
        writer.write(answer(body, status=429, headers={"Retry-After": "1"}))
        return True

    async with upstream(error) as server, client_for(server) as client:
        async with client.stream("POST", "/s", b"small", {}, read_timeout_s=1) as resp:
            assert resp.status == 429 and resp.headers["retry-after"] == "1"
            assert await resp.read(1024) == b'{"error": {"message": "slow down"}}'
        with pytest.raises(ResponseTooLarge):
            async with client.stream("POST", "/s", b"big", {}, read_timeout_s=1) as resp:
                await resp.read(1024)
        # The first was read whole and pooled; the second reused it, and being refused, closed it.
        assert server.connections == 1 and client.idle_connections == 0
        await server.wait_closed_by_client()


async def test_stream_reset_mid_body_after_some_lines() -> None:
    async def cut(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(sse_head() + chunk(b"data: 1\n\ndata: 2\n\n"))
        await writer.drain()
        await asyncio.sleep(0.05)
        rst(writer)
        return False

    async with upstream(cut) as server, client_for(server) as client:
        got = []
        with pytest.raises(HTTPReadError):
            async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=1) as resp:
                async for line in resp:
                    got.append(line)
        assert got == [b"data: 1\n", b"\n", b"data: 2\n", b"\n"]  # what arrived is handed out first
        assert client.in_use == 0


async def test_stream_backpressure_pauses_reading() -> None:
    line = b"data: " + b"x" * 1017 + b"\n"  # 1 KiB lines
    total_lines = 64 * 1024  # 64 MiB: far more than socket buffers and the client's read buffer
    sent = {"bytes": 0}

    async def firehose(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            + f"content-length: {len(line) * total_lines}\r\n\r\n".encode()
        )
        block = line * 256
        for _ in range(total_lines // 256):
            writer.write(block)
            await writer.drain()
            sent["bytes"] += len(block)
        return True

    async with upstream(firehose) as server, client_for(server) as client:
        async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=5) as resp:
            assert await anext(resp) == line
            await asyncio.sleep(0.3)  # the consumer dawdles; the server must be held back
            assert sent["bytes"] < 32 * 1024 * 1024
            count = 1
            async with asyncio.timeout(20):
                async for got in resp:
                    assert got == line
                    count += 1
        assert count == total_lines
        assert server.connections == 1 and client.idle_connections == 1


async def test_gzip_stream_is_decoded() -> None:
    payload = b"".join(f"data: {i}\n\n".encode() for i in range(50))
    packed = gzip.compress(payload)

    async def gz(writer: asyncio.StreamWriter, req: Request) -> bool:
        writer.write(sse_head().replace(b"\r\n\r\n", b"\r\ncontent-encoding: gzip\r\n\r\n"))
        for i in range(0, len(packed), 7):
            writer.write(chunk(packed[i : i + 7]))
        writer.write(b"0\r\n\r\n")
        return True

    async with upstream(gz) as server, client_for(server) as client:
        async with client.stream("POST", "/s", b"{}", {}, read_timeout_s=1) as resp:
            lines = [line async for line in resp]
        assert b"".join(lines) == payload


# --- the same scenarios on uvloop, the loop the gateway serves on ----------------------------------------

UVLOOP_SCENARIOS: list[Callable[[], Awaitable[None]]] = [
    test_keepalive_reuses_one_connection_and_sends_one_clean_request,
    test_pool_limit_holds_under_50_concurrent_requests,
    test_chunked_body,
    test_close_delimited_body_is_read_to_eof_and_not_pooled,
    test_gzip_and_deflate_bodies_are_decoded,
    test_idle_connection_closed_by_server_is_not_reused,
    test_reused_connection_dying_before_the_answer_is_retried_once_on_a_fresh_one,
    test_fresh_connection_reset_before_first_byte_fails_without_retry,
    test_reset_mid_body,
    test_response_too_large_declared_and_counted,
    test_total_timeout_closes_the_connection,
    test_cancellation_closes_the_connection_and_frees_the_slot,
    test_https_with_a_custom_context,
    test_stream_lines_split_across_chunks_and_reuse,
    test_stream_line_too_long,
    test_stream_stall_times_out_per_read_not_in_total,
    test_abandoned_stream_closes_its_connection,
    test_stream_reset_mid_body_after_some_lines,
    test_stream_backpressure_pauses_reading,
]


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS, ids=[s.__name__[5:] for s in UVLOOP_SCENARIOS])
def test_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        await scenario()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
