"""The errors of providers.http1: every failure of the client is one of these."""

from __future__ import annotations


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


class TrailingData(HTTPClientError):
    """Bytes after a complete answer: the connection cannot be reused."""
