"""OpenAI's own API through the official `openai` SDK: chat (plain and streamed), images, embeddings.

The SDK's retries are off (`max_retries=0`): the gateway's fallback owns retries, so a 429 is seen once
and its Retry-After reaches fallback. Bodies pass through as the client sent them (unknown fields go in
`extra_body`), and answers come back as the upstream's own JSON, so nothing is lost in a round trip through
the SDK's models.

Options (`providers.<name>.options`):
    organization: str      sent as OpenAI-Organization
    project: str           sent as OpenAI-Project

Example policy entry::

    providers:
      openai: {kind: openai, api_key_env: OPENAI_API_KEY}     # base_url defaults to api.openai.com
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import openai

from gateway.errors import ErrorKind, UpstreamError
from gateway.pricing import IMAGE_TOKENS_PER_MEGAPIXEL
from providers.base import JSON, CallContext, ProviderResult, StreamChunk, Usage
from providers.errors import classify_status, usage_from

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec

# Image models that answer only with base64 and refuse `response_format`.
_B64_ONLY_PREFIXES = ("gpt-image-",)


def redact(text: str, secret: str | None) -> str:
    """`text` with the key removed, for upstream messages that echo (part of) it back."""
    return text.replace(secret, "[redacted]") if secret else text


def map_openai_error(exc: Exception, name: str, timeout_s: float, secret: str | None) -> UpstreamError:
    """The UpstreamError for an `openai` SDK exception (litellm's exceptions subclass these too)."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError(ErrorKind.TIMEOUT, f"{name}: no answer within {timeout_s:.1f}s")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError(ErrorKind.TRANSIENT, f"{name}: connection failed ({type(exc).__name__})")
    if isinstance(exc, openai.APIStatusError):
        try:
            raw = exc.response.content
        except httpx.ResponseNotRead:
            raw = b""
        error = classify_status(exc.status_code, raw, exc.response.headers, name)
        error.message = redact(error.message, secret)
        error.args = (error.message,)
        return error
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(ErrorKind.TIMEOUT, f"{name}: stream stalled for {timeout_s:.1f}s")
    # openai.APIError without a status (an `error` event inside a stream), httpx transport errors.
    return UpstreamError(
        ErrorKind.TRANSIENT, f"{name}: {type(exc).__name__}: {redact(str(exc), secret)[:300]}"
    )


def split_body(body: JSON, drop: tuple[str, ...] = ()) -> JSON:
    """The client's fields the SDK call does not name itself; they travel unchanged as `extra_body`."""
    skip = {"model", "stream", "stream_options", *drop}
    return {k: v for k, v in body.items() if k not in skip}


def _image_tokens(body: JSON) -> int:
    """Output tokens one image of the requested size is assumed to cost (OpenAI's "high" quality count)."""
    width, _, height = str(body.get("size") or "1024x1024").partition("x")
    megapixels = int(width) * int(height) / 1e6 if width.isdigit() and height.isdigit() else 1.048576
    return round(megapixels * IMAGE_TOKENS_PER_MEGAPIXEL)


class OpenAIProvider:
    kind: ClassVar[str] = "openai"

    def __init__(self, spec: ProviderSpec, name: str) -> None:
        self.name = name
        self.spec = spec
        self._key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self._client: openai.AsyncOpenAI | None = None

    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, built on first use inside the running loop (its connection pool belongs to it)."""
        if not self._key:
            raise UpstreamError(
                ErrorKind.AUTH, f"{self.name}: env var {self.spec.api_key_env or '(api_key_env)'} is not set"
            )
        if self._client is None:
            http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=self.spec.max_connections, max_keepalive_connections=100),
                timeout=httpx.Timeout(self.spec.timeout_s, connect=self.spec.connect_timeout_s),
            )
            self._client = openai.AsyncOpenAI(
                api_key=self._key,
                base_url=self.spec.base_url,
                organization=self.spec.options.get("organization"),
                project=self.spec.options.get("project"),
                max_retries=0,
                http_client=http,
            )
        return self._client

    def _request_options(self, ctx: CallContext) -> dict[str, Any]:
        return {
            "timeout": ctx.timeout_s,
            "extra_headers": {"x-request-id": ctx.request_id, **ctx.extra_headers},
        }

    def _error(self, exc: Exception, ctx: CallContext) -> UpstreamError:
        return map_openai_error(exc, self.name, ctx.timeout_s, self._key)

    async def chat(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        client = self.client()
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=deployment.model,
                messages=body.get("messages", []),
                extra_body=split_body(body, ("messages",)),
                **self._request_options(ctx),
            )
            result = raw.http_response.json()
        except openai.OpenAIError as exc:
            raise self._error(exc, ctx) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise self._error(exc, ctx) from exc
        if not isinstance(result, dict) or not isinstance(result.get("choices"), list):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: chat answer has no choices")
        return ProviderResult(result, usage_from(result.get("usage"), {}))

    async def stream_chat(
        self, deployment: Deployment, body: JSON, ctx: CallContext
    ) -> AsyncIterator[StreamChunk]:
        client = self.client()
        finished = False
        try:
            stream = await client.chat.completions.create(
                model=deployment.model,
                messages=body.get("messages", []),
                stream=True,
                # Always ask for usage, so spend is counted even when the client did not ask for it.
                stream_options={"include_usage": True},
                extra_body=split_body(body, ("messages",)),
                **self._request_options(ctx),
            )
            async with stream:
                async for chunk in stream:
                    data = chunk.model_dump(mode="json", exclude_unset=True)
                    finished = finished or any(c.finish_reason for c in chunk.choices)
                    usage = usage_from(data["usage"], {}) if isinstance(data.get("usage"), dict) else None
                    yield StreamChunk(data, usage)
        except openai.OpenAIError as exc:
            raise self._error(exc, ctx) from exc
        except httpx.HTTPError as exc:
            raise self._error(exc, ctx) from exc
        if not finished:
            # The SDK ends quietly when the connection closes early; a cut answer must never look whole.
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: stream ended without a finish_reason")

    async def images(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        client = self.client()
        b64_only = deployment.model.startswith(_B64_ONLY_PREFIXES)
        extra = split_body(body, ("prompt", "response_format") if b64_only else ("prompt",))
        try:
            raw = await client.images.with_raw_response.generate(
                model=deployment.model,
                prompt=str(body.get("prompt", "")),
                extra_body=extra,
                **self._request_options(ctx),
            )
            result = raw.http_response.json()
        except openai.OpenAIError as exc:
            raise self._error(exc, ctx) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise self._error(exc, ctx) from exc
        data = result.get("data") if isinstance(result, dict) else None
        if not isinstance(data, list) or not data:
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: image answer has no data")
        # gpt-image-* report image tokens (input_tokens/output_tokens); dall-e is priced per image.
        raw_usage = result.get("usage")
        usage = usage_from(raw_usage, {}) if isinstance(raw_usage, dict) else Usage()
        if b64_only and not usage.completion_tokens:
            # Billed by token but no tokens reported: estimate, and say so (never a silent $0).
            usage.completion_tokens = _image_tokens(body) * len(data)
            usage.estimated = True
        usage.images = usage.images or len(data)
        return ProviderResult(result, usage)

    async def embeddings(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        client = self.client()
        try:
            raw = await client.embeddings.with_raw_response.create(
                model=deployment.model,
                input=body.get("input", ""),
                # The SDK asks for base64 unless told; the raw JSON must hold floats as the client expects.
                encoding_format=body.get("encoding_format", "float"),
                extra_body=split_body(body, ("input", "encoding_format")),
                **self._request_options(ctx),
            )
            result = raw.http_response.json()
        except openai.OpenAIError as exc:
            raise self._error(exc, ctx) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise self._error(exc, ctx) from exc
        if not isinstance(result, dict) or not isinstance(result.get("data"), list):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: embedding answer has no data")
        return ProviderResult(result, usage_from(result.get("usage"), {}))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
