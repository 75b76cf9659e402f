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

from providers.http1.client import HTTPClient, Response
from providers.http1.connection import DEFAULT_MAX_LINE_BYTES
from providers.http1.errors import (
    HTTPClientError,
    HTTPConnectError,
    HTTPProtocolError,
    HTTPReadError,
    HTTPTimeout,
    LineTooLong,
    ResponseTooLarge,
)
from providers.http1.stream import StreamResponse

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
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
