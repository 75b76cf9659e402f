"""Targets (b) and (f): a bare passthrough proxy with no logic, on the gateway's server stack.

uvicorn + uvloop + httptools serving a raw ASGI callable that forwards the body to the upstream through
one pooled keep-alive client and relays the answer (streams chunk by chunk). (b), the issue's reference,
uses aiohttp's client; (f) uses the gateway's own client (providers/http1/), so it is the limit for the
stack the gateway actually runs on. Whatever the gateway costs beyond (f) is its own logic.

    python -m bench.passthrough --port 9001 --upstream http://127.0.0.1:9000 [--client http1]
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

from bench.payloads import CHAT_MODEL, PLAIN_PREFIX, STREAM_PREFIX
from providers.http1 import HTTPClient

Scope = dict[str, Any]


_JSON = {"content-type": "application/json"}


class Passthrough:
    """An ASGI app: POST /v1/<path> -> POST <upstream><prefix>/<path>, nothing else."""

    def __init__(self, upstream: str, client: str = "aiohttp") -> None:
        self.upstream = upstream.rstrip("/")
        self.client = client
        self.session: aiohttp.ClientSession | None = None
        self.http1: HTTPClient | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # The bench's model name says which fake-upstream prefix answers (plain or streamed): a byte
        # search, because parsing the JSON would be "logic".
        prefix = PLAIN_PREFIX if CHAT_MODEL.encode() in body else STREAM_PREFIX
        if self.http1 is not None:
            await self._via_http1(prefix + scope["path"].removeprefix("/v1"), body, send)
            return
        url = self.upstream + prefix + scope["path"].removeprefix("/v1")
        assert self.session is not None
        async with self.session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
            headers = [(b"content-type", resp.headers.get("content-type", "application/json").encode())]
            if resp.content_type == "text/event-stream":
                await send({"type": "http.response.start", "status": resp.status, "headers": headers})
                async for piece in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await resp.read()
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _via_http1(self, path: str, body: bytes, send: Any) -> None:
        assert self.http1 is not None
        if path.startswith(STREAM_PREFIX):
            async with self.http1.stream("POST", path, body, _JSON, read_timeout_s=30) as resp:
                headers = [(b"content-type", resp.headers.get("content-type", "text/event-stream").encode())]
                await send({"type": "http.response.start", "status": resp.status, "headers": headers})
                async for line in resp:
                    await send({"type": "http.response.body", "body": line, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        answer = await self.http1.request("POST", path, body, _JSON, timeout_s=30)
        headers = [
            (b"content-type", answer.headers.get("content-type", "application/json").encode()),
            (b"content-length", str(len(answer.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.client == "http1":
                    self.http1 = HTTPClient(self.upstream, max_connections=256)
                else:
                    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
                    self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                if self.http1 is not None:
                    await self.http1.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake upstream's origin, http://127.0.0.1:PORT")
    parser.add_argument("--client", choices=("aiohttp", "http1"), default="aiohttp")
    args = parser.parse_args()
    uvicorn.run(
        Passthrough(args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
