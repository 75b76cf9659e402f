"""Any server that speaks OpenAI's HTTP API: OpenAI itself, vLLM, Ollama, llama.cpp, TGI, the local backend.

Runs on one pooled keep-alive `providers.http1.HTTPClient` per provider entry: a purpose-built HTTP/1.1
client on asyncio Protocols and the httptools C parser. The HTTP client decides most of a Python gateway's
overhead: aiohttp (~8,300 proxied requests/s where httpx managed ~610, FIELD-NOTES) still took about a
quarter of the gateway's event-loop CPU per proxied request in its general machinery (session, request and
response objects, timer contexts, tracing, cookie jar). Measured on this machine, 5,000 sequential
`_post_json` calls to a loopback upstream on uvloop cost ~70 us of client CPU each, where the same method
on aiohttp cost ~270 us.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from gateway.errors import ErrorKind, UpstreamError
from providers.base import JSON, CallContext, ProviderResult, StreamChunk
from providers.errors import classify_status, usage_from
from providers.http1 import HTTPClient, HTTPClientError, ResponseTooLarge, StreamResponse

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec

# Sent because some vendors' edge proxies treat a request without one as a bot (aiohttp sent its own).
USER_AGENT = "hybrid-gateway/0.1"


class OpenAICompatibleProvider:
    kind: ClassVar[str] = "openai_compatible"

    def __init__(self, spec: ProviderSpec, name: str) -> None:
        if not spec.base_url:
            raise ValueError(f"provider {name!r}: base_url is required")
        self.name = name
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self._headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        self._secrets: tuple[str, ...] = ()
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if key:
                self._headers["authorization"] = f"Bearer {key}"
                self._secrets = (key,)  # an upstream that echoes it in an error must not leak it
        self._http: HTTPClient | None = None

    def _client(self) -> HTTPClient:
        # Created on first use, inside the running event loop that will use it.
        if self._http is None or self._http.closed:
            self._http = HTTPClient(
                self.base_url,
                max_connections=self.spec.max_connections,
                connect_timeout_s=self.spec.connect_timeout_s,
                max_response_bytes=self.spec.max_response_bytes,
                keepalive_s=60.0,
            )
        return self._http

    def _headers_for(self, ctx: CallContext) -> dict[str, str]:
        return {**self._headers, "x-request-id": ctx.request_id, **ctx.extra_headers}

    async def _post_json(self, path: str, payload: JSON, ctx: CallContext) -> tuple[JSON, dict[str, str]]:
        # The total timeout covers the whole exchange; connecting gets min(connect_timeout_s, timeout_s).
        try:
            resp = await self._client().request(
                "POST", path, orjson.dumps(payload), self._headers_for(ctx), timeout_s=ctx.timeout_s
            )
        except TimeoutError as exc:
            raise UpstreamError(
                ErrorKind.TIMEOUT, f"{self.name}: no answer within {ctx.timeout_s:.1f}s"
            ) from exc
        except ResponseTooLarge as exc:
            raise self._too_large() from exc
        except HTTPClientError as exc:
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{self.name}: connection failed ({type(exc).__name__})"
            ) from exc
        raw, headers = resp.body, resp.headers  # header names are lowercase
        if resp.status >= 300:
            raise classify_status(resp.status, raw, headers, self.name, secrets=self._secrets)
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
            # No total timeout: connecting gets min(connect_timeout_s, timeout_s), and every wait for the
            # head or for more of the body gets timeout_s (a stall bound, not a length bound).
            async with self._client().stream(
                "POST",
                "/chat/completions",
                orjson.dumps(payload),
                self._headers_for(ctx),
                connect_timeout_s=min(self.spec.connect_timeout_s, ctx.timeout_s),
                read_timeout_s=ctx.timeout_s,
            ) as resp:
                if resp.status >= 300:
                    raw = await resp.read(self.spec.max_response_bytes)
                    raise classify_status(resp.status, raw, resp.headers, self.name, secrets=self._secrets)
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    raise UpstreamError(
                        ErrorKind.TRANSIENT, f"{self.name}: stream answered without text/event-stream"
                    )
                async for chunk in _sse_chunks(resp, self.name):
                    yield chunk
        except UpstreamError:
            raise
        except TimeoutError as exc:
            raise UpstreamError(
                ErrorKind.TIMEOUT, f"{self.name}: stream stalled for {ctx.timeout_s:.1f}s"
            ) from exc
        except ResponseTooLarge as exc:  # only an error answer is read whole, and it is bounded too
            raise self._too_large() from exc
        except (HTTPClientError, ValueError) as exc:
            # LineTooLong among them: an SSE line beyond the client's line limit.
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{self.name}: stream broke ({type(exc).__name__})"
            ) from exc

    def _too_large(self) -> UpstreamError:
        """Bodies past `max_response_bytes` are refused as transient, so memory per request stays bounded."""
        limit = self.spec.max_response_bytes
        return UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: answer larger than {limit} bytes")

    async def aclose(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.aclose()


async def _sse_chunks(resp: StreamResponse, name: str) -> AsyncIterator[StreamChunk]:
    done = False
    async for raw_line in resp:
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
