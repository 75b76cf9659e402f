"""One pooled connection: an asyncio Protocol that feeds httptools and wakes the request waiting on it."""

from __future__ import annotations

import asyncio
import zlib
from typing import Final, cast

import httptools

from providers.http1.errors import (
    HTTPClientError,
    HTTPProtocolError,
    HTTPReadError,
    HTTPTimeout,
    ResponseTooLarge,
    TrailingData,
)

MAX_HEAD_BYTES: Final = 64 * 1024  # status line plus headers
STREAM_HIGH_WATER: Final = 256 * 1024  # buffered, unread stream bytes before reading pauses
# aiohttp refuses a body line longer than twice its 256 KiB read buffer; so do we, by default.
DEFAULT_MAX_LINE_BYTES: Final = 512 * 1024
MAX_DECODED_CHUNK: Final = 32 * 1024 * 1024  # one compressed network read may not expand past this
TIMER_SLACK: Final = 0.001  # loop timers may fire a hair early; earlier than this re-arms


class Decoder:
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


class Connection(asyncio.Protocol):
    """One connection. Parser callbacks fill the current answer and wake whoever waits on `waiter`.

    Request mode wakes once, when the message is complete; stream mode wakes when the headers are in and
    then whenever body bytes arrive (or the body ends), so the reader can take lines off `buf`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[Connection]) -> None:
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
        self.decoder: Decoder | None = None
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
        if self.deadline - self.loop.time() > TIMER_SLACK:
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
            raise TrailingData("bytes after a complete answer")

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
                self.decoder = Decoder(self.encoding)
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


def decode_all(encoding: str, body: bytes, limit: int) -> bytes:
    decoder = Decoder(encoding)
    out = decoder.decode(body, limit)
    out += decoder.finish()
    if len(out) > limit:
        raise ResponseTooLarge(f"decoded answer larger than {limit} bytes")
    return out
