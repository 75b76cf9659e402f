"""A fake OpenAI-shaped upstream on loopback, with scripted faults, that records every request it gets.

    fake = FakeOpenAI()
    base_url = await fake.start()            # http://127.0.0.1:PORT/v1
    fake.script("gpt-x", Fault.status(500), Fault.ok())   # next calls for model gpt-x: 500, then success
    ...
    fake.received                             # list of (path, json body, headers)
    await fake.stop()

Faults are real HTTP behaviour (status codes, Retry-After, hangs, malformed bodies, resets, streams cut
after N chunks), so the code under test meets them through its real HTTP client.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

# A 1x1 PNG.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Fault:
    kind: str = "ok"
    status: int = 200
    code: str | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    after_chunks: int = 0
    usage: bool = True

    @classmethod
    def ok(cls, *, usage: bool = True) -> Fault:
        return cls("ok", usage=usage)

    @classmethod
    def http(cls, status: int, code: str | None = None, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, code=code, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def html(cls) -> Fault:
        return cls("html")

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def cut_stream(cls, after_chunks: int) -> Fault:
        return cls("cut", after_chunks=after_chunks)

    @classmethod
    def slow_stream(cls, seconds_per_chunk: float) -> Fault:
        return cls("slow", seconds=seconds_per_chunk)


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeOpenAI:
    name: str = "fake"
    received: list[Received] = field(default_factory=list)
    _scripts: dict[str, collections.deque[Fault]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""
    # When set, a request whose bearer token differs gets OpenAI's 401 invalid_api_key (as the real API does).
    require_key: str | None = None
    # Streams whose reader (the gateway) went away before the stream's end.
    abandoned_streams: int = 0

    def script(self, model: str, *faults: Fault) -> None:
        self._scripts.setdefault(model, collections.deque()).extend(faults)

    def always(self, model: str, fault: Fault, times: int = 1000) -> None:
        self.script(model, *([fault] * times))

    def clear(self) -> None:
        self._scripts.clear()
        self.received.clear()

    def calls(self, model: str | None = None) -> int:
        return sum(1 for r in self.received if model is None or r.body.get("model") == model)

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _take(self, request: web.Request) -> tuple[dict[str, Any], Fault]:
        body = await request.json(loads=orjson.loads)
        self.received.append(Received(request.path, body, dict(request.headers)))
        if (
            self.require_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.require_key}"
        ):
            return body, Fault.http(401, "invalid_api_key")
        queue = self._scripts.get(str(body.get("model")))
        fault = queue.popleft() if queue else Fault.ok()
        return body, fault

    async def _common_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse | None:
        if fault.kind == "status":
            headers = {"retry-after": fault.retry_after} if fault.retry_after else {}
            err = {
                "error": {
                    "message": f"{self.name} says {fault.status}",
                    "type": "error",
                    "param": None,
                    "code": fault.code,
                }
            }
            return web.json_response(
                err, status=fault.status, headers=headers, dumps=lambda o: orjson.dumps(o).decode()
            )
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
        if fault.kind == "malformed":
            return web.Response(body=b'{"id": "x", "choices": [', content_type="application/json")
        if fault.kind == "html":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if fault.kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._take(request)
        early = await self._common_fault(request, fault)
        if early is not None:
            return early
        model = str(body.get("model"))
        words = ["Hello", " from", f" {self.name}", f"/{model}", "."]
        limit = body.get("max_tokens")
        finish = "tool_calls" if body.get("tools") else "stop"
        if isinstance(limit, int) and limit < len(words):  # one word per token: cut where max_tokens says
            words, finish = words[:limit], "length"
        if body.get("stream"):
            return await self._stream(request, body, model, words, fault, finish)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(words)}
        if body.get("tools"):
            tool = body["tools"][0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": tool, "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": finish,
                }
            ],
        }
        if fault.usage:
            answer["usage"] = {
                "prompt_tokens": 11,
                "completion_tokens": len(words),
                "total_tokens": 11 + len(words),
            }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        model: str,
        words: list[str],
        fault: Fault,
        finish: str,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": word} if i == 0 else {"content": word}
            for i, word in enumerate(words)
        ]
        if body.get("tools"):  # a tool call, its arguments in pieces, as vendors stream them
            tool = body["tools"][0]["function"]["name"]
            first = {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": tool, "arguments": ""},
            }
            pieces = ['{"city"', ': "Paris"}']
            deltas = [{"role": "assistant", "content": None, "tool_calls": [first]}] + [
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces
            ]
        for i, delta in enumerate(deltas):
            if fault.kind == "cut" and i >= fault.after_chunks:
                assert request.transport is not None
                request.transport.abort()
                return resp
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            if fault.kind == "slow" and i > 0:
                await asyncio.sleep(fault.seconds)
            try:
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            except ConnectionError:
                self.abandoned_streams += 1
                return resp
        await resp.write(
            b"data: "
            + orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            + b"\n\n"
        )
        if (body.get("stream_options") or {}).get("include_usage") and fault.usage:
            usage = {"prompt_tokens": 11, "completion_tokens": len(deltas), "total_tokens": 11 + len(deltas)}
            await resp.write(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _images(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._take(request)
        early = await self._common_fault(request, fault)
        if early is not None:
            return early
        n = int(body.get("n") or 1)
        item = {"b64_json": base64.b64encode(PNG_1X1).decode()}
        answer = {"created": int(time.time()), "data": [dict(item) for _ in range(n)], "usage": {"images": n}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._take(request)
        early = await self._common_fault(request, fault)
        if early is not None:
            return early
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1 * (i + 1)] * 8} for i in range(len(inputs))
        ]
        answer = {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
