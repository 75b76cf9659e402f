"""Target (b): a bare passthrough proxy with no logic, on the gateway's own stack.

uvicorn + uvloop + httptools serving a raw ASGI callable that forwards the body to the upstream through
one pooled keep-alive aiohttp session and relays the answer (streams chunk by chunk). Whatever the
gateway costs beyond this is its own logic; this is the limit for the stack.

    python -m bench.passthrough --port 9001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

from bench.payloads import CHAT_MODEL, PLAIN_PREFIX, STREAM_PREFIX

Scope = dict[str, Any]


class Passthrough:
    """An ASGI app: POST /v1/<path> -> POST <upstream><prefix>/<path>, nothing else."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

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

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake upstream's origin, http://127.0.0.1:PORT")
    args = parser.parse_args()
    uvicorn.run(
        Passthrough(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
