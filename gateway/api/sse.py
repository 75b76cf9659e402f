"""An SSE response that stops its producer the moment the client goes away.

Starlette's StreamingResponse does the same, but on an ASGI 2.3 server (uvicorn) it opens an anyio task
group per stream, which showed in the time to first token. Here the stream is written by the request's
own task, and one small watcher task waits for `http.disconnect`: when the client leaves first, the
watcher cancels the writing task, so the producer (gateway/streaming.py) stops reading the upstream and
accounts what was streamed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class SSEResponse(Response):
    def __init__(self, events: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.body = b""
        self.events = events
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = _HEADERS + extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = asyncio.current_task()
        assert writer is not None
        streaming = True

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if streaming:
                        writer.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            streaming = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not (watcher.done() and not watcher.cancelled()):
                raise  # cancelled from outside (shutdown): not ours to swallow
            writer.uncancel()  # the client left: nothing more to send
            await self.events.aclose()  # stops the producer wherever it was; it accounts what was streamed
        finally:
            streaming = False
            watcher.cancel()
