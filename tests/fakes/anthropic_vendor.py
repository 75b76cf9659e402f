"""A fake Anthropic Messages API on loopback: what litellm's `anthropic/...` models talk to.

    fake = FakeAnthropic(key="sk-ant-test")
    api_base = await fake.start()                  # http://127.0.0.1:PORT  (litellm appends /v1/messages)
    fake.script("claude-x", Fault.http(429, retry_after="1"), Fault.ok())

Reproduces Anthropic's shapes: the message object, the SSE event sequence of a stream (message_start ...
message_stop), `{"type": "error", "error": {"type": ..., "message": ...}}` errors with their statuses, and
the x-api-key check. Faults reuse `tests.fakes.openai_upstream.Fault`.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream import Fault, Received

# Anthropic's error type per HTTP status; `code` on a Fault picks a more specific message.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_MESSAGES = {
    "context_length_exceeded": "prompt is too long: 250000 tokens > 200000 maximum",
    "content_policy_violation": "Output blocked by content filtering policy",
    "model_not_found": "model: {model}",
}


@dataclass
class FakeAnthropic:
    key: str = "sk-ant-test"
    received: list[Received] = field(default_factory=list)
    _scripts: dict[str, collections.deque[Fault]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    def script(self, model: str, *faults: Fault) -> None:
        self._scripts.setdefault(model, collections.deque()).extend(faults)

    def calls(self, model: str | None = None) -> int:
        return sum(1 for r in self.received if model is None or r.body.get("model") == model)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _error(
        self, status: int, code: str | None, model: str, retry_after: str | None = None
    ) -> web.Response:
        message = _MESSAGES.get(code or "", f"fake anthropic says {status}").format(model=model)
        body = {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}
        headers = {"request-id": "req_fake"}
        if retry_after:
            headers["retry-after"] = retry_after
        return web.Response(
            body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        self.received.append(Received(request.path, body, dict(request.headers)))
        model = str(body.get("model"))
        if request.headers.get("x-api-key") != self.key:
            return self._error(401, None, model)
        queue = self._scripts.get(model)
        fault = queue.popleft() if queue else Fault.ok()
        if fault.kind == "status":
            return self._error(fault.status, fault.code, model, fault.retry_after)
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
        words = ["Hello", " from", " claude", f"/{model}", "."]
        if body.get("stream"):
            return await self._stream(request, model, words, fault)
        answer = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "".join(words)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 6},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _stream(
        self, request: web.Request, model: str, words: list[str], fault: Fault
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n")

        await event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        )
        await event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        for i, word in enumerate(words):
            if fault.kind == "cut" and i >= fault.after_chunks:
                assert request.transport is not None
                request.transport.abort()
                return resp
            await event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
            )
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        )
        await event("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp
