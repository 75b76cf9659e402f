"""Streamed chat: commit on the first chunk, then relay; a stream that breaks later ends with an error event.

Before the first chunk reaches the client, a failing upstream is just another fallback attempt
(`first_chunk` is the call fallback retries). After it, the answer is committed to one deployment: if the
upstream dies, the client gets an OpenAI-shaped `error` event and the stream closes *without* `[DONE]`,
so no client can mistake a cut answer for a complete one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import ErrorKind, LedgerUnavailable, UpstreamError
from providers.base import JSON, CallContext, Provider, StreamChunk, Usage
from providers.errors import redact

Finish = Callable[[Usage | None, str, UpstreamError | None, int], Any]
FirstChunk = tuple[StreamChunk, AsyncIterator[StreamChunk]]
CLIENT_CLOSED = 499


def first_chunk(body: JSON) -> Callable[[Provider, Any, CallContext], Awaitable[FirstChunk]]:
    """The fallback call for streams: open the upstream stream and wait for its first chunk."""

    async def call(provider: Provider, deployment: Any, ctx: CallContext) -> FirstChunk:
        stream = provider.stream_chat(deployment, body, ctx)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise UpstreamError(
                ErrorKind.TRANSIENT, "the upstream stream ended before its first chunk"
            ) from None
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        return first, stream

    return call


@dataclass(slots=True)
class OpenStream:
    first: StreamChunk
    rest: AsyncIterator[StreamChunk]
    include_usage: bool
    headers: dict[str, str]
    finish: Finish
    secrets: tuple[str, ...] = ()

    async def sse(self) -> AsyncGenerator[bytes, None]:
        usage: Usage | None = None
        text: list[str] = []
        finished = False
        try:
            chunk: StreamChunk | None = self.first
            while chunk is not None:
                if chunk.usage is not None:
                    usage = chunk.usage
                _collect_text(chunk.data, text)
                out = chunk.data if self.include_usage else _without_usage(chunk.data)
                if out is not None:
                    yield b"data: " + orjson.dumps(out) + b"\n\n"
                chunk = await anext(self.rest, None)
            finished = True
            try:
                done = self.finish(usage, "".join(text), None, 200)  # its row is spooled: [DONE] may go
            except LedgerUnavailable as exc:  # no row, so no [DONE]: the client sees an incomplete answer
                yield _error_event(exc.message, exc.type, exc.code)
                return
            # An SSE comment: ignored by OpenAI clients, readable by anyone who wants the final cost.
            yield f": x-gateway-cost-usd={done.cost_usd:.8f}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except UpstreamError as exc:
            finished = True
            with contextlib.suppress(LedgerUnavailable):  # the stream ends with its error event either way
                self.finish(usage, "".join(text), exc, 502)
            message = redact(f"the upstream stream broke: {exc.message}", self.secrets)
            yield _error_event(message, "upstream_error", "stream_interrupted")
        finally:
            if not finished:  # the client went away (cancelled) mid-stream: still account what was used
                with contextlib.suppress(LedgerUnavailable):  # logged by the ledger; nobody to tell
                    self.finish(usage, "".join(text), None, CLIENT_CLOSED)
            await asyncio.shield(_close(self.rest))


def _error_event(message: str, type_: str, code: str | None) -> bytes:
    event = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def _close(stream: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _collect_text(data: JSON, into: list[str]) -> None:
    for choice in data.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                into.append(content)
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    into.append(fn["arguments"])


def _without_usage(data: JSON) -> JSON | None:
    """The gateway always asks upstreams for usage; hide it from clients that did not ask."""
    if "usage" not in data:
        return data
    if not data.get("choices"):
        return None
    return {k: v for k, v in data.items() if k != "usage"}
