"""Any server that speaks OpenAI's HTTP API: OpenAI itself, vLLM, Ollama, llama.cpp, TGI, the local backend.

Runs on one pooled keep-alive aiohttp session per provider entry: measured on this machine, a pooled
aiohttp client proxies ~8,300 requests/s where httpx manages ~610 (FIELD-NOTES), and the HTTP client
decides most of a Python gateway's overhead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import aiohttp.http_exceptions
import orjson

from gateway.errors import ErrorKind, UpstreamError
from providers.base import JSON, CallContext, ProviderResult, StreamChunk
from providers.errors import classify_status, usage_from

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec


class OpenAICompatibleProvider:
    kind: ClassVar[str] = "openai_compatible"

    def __init__(self, spec: ProviderSpec, name: str) -> None:
        if not spec.base_url:
            raise ValueError(f"provider {name!r}: base_url is required")
        self.name = name
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self._headers = {"content-type": "application/json"}
        self._secrets: tuple[str, ...] = ()
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if key:
                self._headers["authorization"] = f"Bearer {key}"
                self._secrets = (key,)  # an upstream that echoes it in an error must not leak it
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop that will use it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.spec.max_connections, keepalive_timeout=60, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(), auto_decompress=True
            )
        return self._session

    def _timeout(self, ctx: CallContext) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=ctx.timeout_s, connect=min(self.spec.connect_timeout_s, ctx.timeout_s)
        )

    def _headers_for(self, ctx: CallContext) -> dict[str, str]:
        return {**self._headers, "x-request-id": ctx.request_id, **ctx.extra_headers}

    async def _post_json(self, path: str, payload: JSON, ctx: CallContext) -> tuple[JSON, dict[str, str]]:
        data = orjson.dumps(payload)
        try:
            async with self._client().post(
                self.base_url + path, data=data, headers=self._headers_for(ctx), timeout=self._timeout(ctx)
            ) as resp:
                raw = await self._read_limited(resp)
                if resp.status >= 400:
                    raise classify_status(resp.status, raw, resp.headers, self.name, secrets=self._secrets)
                headers = {k.lower(): v for k, v in resp.headers.items()}
        except UpstreamError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamError(
                ErrorKind.TIMEOUT, f"{self.name}: no answer within {ctx.timeout_s:.1f}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{self.name}: connection failed ({type(exc).__name__})"
            ) from exc
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{self.name}: answered with a body that is not JSON"
            ) from exc
        if not isinstance(body, dict):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: answered with JSON that is not an object")
        return body, headers

    async def chat(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        payload = {**body, "model": deployment.model, "stream": False}
        payload.pop("stream_options", None)
        result, headers = await self._post_json("/chat/completions", payload, ctx)
        if not isinstance(result.get("choices"), list):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: chat answer has no choices")
        return ProviderResult(result, usage_from(result.get("usage"), headers))

    async def images(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        payload = {**body, "model": deployment.model}
        result, headers = await self._post_json("/images/generations", payload, ctx)
        data = result.get("data")
        if not isinstance(data, list) or not data:
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: image answer has no data")
        usage = usage_from(result.get("usage"), headers)
        usage.images = usage.images or len(data)
        return ProviderResult(result, usage)

    async def embeddings(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        payload = {**body, "model": deployment.model}
        result, headers = await self._post_json("/embeddings", payload, ctx)
        if not isinstance(result.get("data"), list):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: embedding answer has no data")
        return ProviderResult(result, usage_from(result.get("usage"), headers))

    async def stream_chat(
        self, deployment: Deployment, body: JSON, ctx: CallContext
    ) -> AsyncIterator[StreamChunk]:
        # Always ask for usage, so spend is counted even when the client did not ask for it.
        payload = {
            **body,
            "model": deployment.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        try:
            async with self._client().post(
                self.base_url + "/chat/completions",
                data=orjson.dumps(payload),
                headers=self._headers_for(ctx),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=min(self.spec.connect_timeout_s, ctx.timeout_s),
                    sock_read=ctx.timeout_s,
                ),
            ) as resp:
                if resp.status >= 400:
                    raw = await self._read_limited(resp)
                    raise classify_status(resp.status, raw, resp.headers, self.name, secrets=self._secrets)
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    raise UpstreamError(
                        ErrorKind.TRANSIENT, f"{self.name}: stream answered without text/event-stream"
                    )
                async for chunk in _sse_chunks(resp, self.name):
                    yield chunk
        except UpstreamError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamError(
                ErrorKind.TIMEOUT, f"{self.name}: stream stalled for {ctx.timeout_s:.1f}s"
            ) from exc
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, ValueError) as exc:
            # ValueError and HttpProcessingError: aiohttp's answer to an SSE line beyond its line limit.
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{self.name}: stream broke ({type(exc).__name__})"
            ) from exc

    async def _read_limited(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, refused as transient past `max_response_bytes` so memory per request stays bounded."""
        limit = self.spec.max_response_bytes
        if (resp.content_length or 0) > limit:
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: answer larger than {limit} bytes")
        parts, size = [], 0
        async for part in resp.content.iter_chunked(1 << 16):
            size += len(part)
            if size > limit:
                raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: answer larger than {limit} bytes")
            parts.append(part)
        return b"".join(parts)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # aiohttp recommends a short pause so SSL transports close before the loop ends.
            await asyncio.sleep(0)


async def _sse_chunks(resp: aiohttp.ClientResponse, name: str) -> AsyncIterator[StreamChunk]:
    done = False
    async for raw_line in resp.content:
        line = raw_line.strip()
        if not line.startswith(b"data:"):
            continue  # comments, event names, blank separators
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            obj: Any = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{name}: stream sent an event that is not JSON"
            ) from exc
        if not isinstance(obj, dict):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{name}: stream sent an event that is not an object")
        if "error" in obj:
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{name}: stream reported an error: {_message(obj['error'])}"
            )
        usage = usage_from(obj["usage"], {}) if isinstance(obj.get("usage"), dict) else None
        yield StreamChunk(obj, usage)
    if not done:
        raise UpstreamError(ErrorKind.TRANSIENT, f"{name}: stream ended before [DONE]")


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", "unknown error"))[:300]
    return str(error)[:300]
