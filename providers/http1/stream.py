"""Streamed answers: the head first, then the body as lines (SSE) or as one read, each wait bounded."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from providers.http1.connection import Connection
from providers.http1.errors import HTTPClientError, LineTooLong, ResponseTooLarge

if TYPE_CHECKING:
    from providers.http1.client import HTTPClient


class StreamContext:
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
        self, conn: Connection, read_timeout_s: float, max_line_bytes: int, max_response_bytes: int
    ) -> None:
        self._conn: Connection | None = conn
        self._loop = conn.loop
        self._read_timeout = read_timeout_s
        self._max_line = max_line_bytes
        self._limit = max_response_bytes
        self._pos = 0  # start of unread bytes in conn.buf
        self._scan = 0  # where the next newline search starts
        self.status = conn.status
        self.headers = conn.headers

    def _detach(self) -> Connection | None:
        conn, self._conn = self._conn, None
        return conn

    def _live(self) -> Connection:
        conn = self._conn
        if conn is None:
            raise HTTPClientError("the stream is closed")
        return conn

    async def _more(self, conn: Connection) -> bool:
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
