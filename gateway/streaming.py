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
from typing import Any, Protocol

import orjson

from gateway.errors import ErrorKind, LedgerUnavailable, UpstreamError
from providers.base import JSON, CallContext, Provider, StreamChunk, Usage
from providers.errors import redact

Finish = Callable[[Usage | None, str, UpstreamError | None, int], Any]
FirstChunk = tuple[StreamChunk, AsyncIterator[StreamChunk]]
CLIENT_CLOSED = 499


def first_chunk(
    body_for: Callable[[Any], JSON],
) -> Callable[[Provider, Any, CallContext], Awaitable[FirstChunk]]:
    """The fallback call for streams: open the upstream stream and wait for its first chunk.
    `body_for(deployment)` is the request body for an attempt on that deployment."""

    async def call(provider: Provider, deployment: Any, ctx: CallContext) -> FirstChunk:
        stream = provider.stream_chat(deployment, body_for(deployment), ctx)
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


class Events(Protocol):
    """How a relayed chat stream is written for the client: chat completion chunks (ChatEvents) or the
    Responses API's typed events (gateway/responses.py). One object per stream; it may keep state."""

    def chunk(self, data: JSON) -> bytes | None:
        """The bytes for one upstream chunk (None: nothing to send for it)."""

    def end(self, done: Any) -> bytes:
        """The tail of a complete stream, once its ledger row is spooled (`done`: accounting.Finished)."""

    def error(self, message: str, type_: str, code: str | None) -> bytes:
        """The last event of a stream that cannot complete."""


@dataclass(slots=True)
class ChatEvents:
    include_usage: bool

    def chunk(self, data: JSON) -> bytes | None:
        out = data if self.include_usage else _without_usage(data)
        return None if out is None else b"data: " + orjson.dumps(out) + b"\n\n"

    def end(self, done: Any) -> bytes:
        # An SSE comment: ignored by OpenAI clients, readable by anyone who wants the final cost.
        return f": x-gateway-cost-usd={done.cost_usd:.8f}\n\ndata: [DONE]\n\n".encode()

    def error(self, message: str, type_: str, code: str | None) -> bytes:
        event = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass(slots=True)
class OpenStream:
    first: StreamChunk
    rest: AsyncIterator[StreamChunk]
    include_usage: bool
    headers: dict[str, str]
    finish: Finish
    secrets: tuple[str, ...] = ()

    async def sse(self, events: Events | None = None) -> AsyncGenerator[bytes, None]:
        """The client's stream, written by `events` (chat completion chunks unless told otherwise)."""
        events = events or ChatEvents(self.include_usage)
        usage: Usage | None = None
        text: list[str] = []
        finished = False
        try:
            chunk: StreamChunk | None = self.first
            while chunk is not None:
                if chunk.usage is not None:
                    usage = chunk.usage
                _collect_text(chunk.data, text)
                out = events.chunk(chunk.data)
                if out is not None:
                    yield out
                chunk = await anext(self.rest, None)
            finished = True
            try:
                done = self.finish(usage, "".join(text), None, 200)  # its row is spooled: the end may go
            except LedgerUnavailable as exc:  # no row, so no proper end: the client sees an incomplete answer
                yield events.error(exc.message, exc.type, exc.code)
                return
            yield events.end(done)
        except UpstreamError as exc:
            finished = True
            with contextlib.suppress(LedgerUnavailable):  # the stream ends with its error event either way
                self.finish(usage, "".join(text), exc, 502)
            message = redact(f"the upstream stream broke: {exc.message}", self.secrets)
            yield events.error(message, "upstream_error", "stream_interrupted")
        finally:
            if not finished:  # the client went away (cancelled) mid-stream: still account what was used
                with contextlib.suppress(LedgerUnavailable):  # logged by the ledger; nobody to tell
                    self.finish(usage, "".join(text), None, CLIENT_CLOSED)
            await asyncio.shield(_close(self.rest))


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
