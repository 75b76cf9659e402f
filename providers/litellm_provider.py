"""Anthropic, Gemini, Bedrock, Mistral... through litellm: chat (plain and streamed) and embeddings.

The deployment's `model` is litellm's model string (`anthropic/claude-sonnet-4-5`, `gemini/gemini-2.5-flash`,
`mistral/mistral-large-latest`, `bedrock/...`); `base_url` becomes litellm's `api_base`. litellm costs ~5 s
to import, so it is imported on the first call, in a worker thread (the event loop keeps serving), and never
at gateway start-up. Its own retries are off (the gateway's fallback retries) and it uses only its packaged
price map (LITELLM_LOCAL_MODEL_COST_MAP), so it never reaches for the network on import.

Options (`providers.<name>.options`):
    drop_params: bool (default true)   drop OpenAI parameters the vendor does not support instead of failing
    extra: dict                        passed as keyword arguments to every litellm call
                                       (e.g. {aws_region_name: eu-central-1} for Bedrock)

Example policy entry::

    providers:
      anthropic: {kind: litellm, api_key_env: ANTHROPIC_API_KEY}
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.errors import ErrorKind, UpstreamError
from providers.base import JSON, CallContext, ProviderResult, StreamChunk
from providers.errors import parse_retry_after, usage_from

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec


class _Loaded:
    """litellm once imported, and the lock that keeps concurrent first calls to one import."""

    module: ModuleType | None = None
    lock: asyncio.Lock | None = None


def import_litellm() -> ModuleType:
    """Import and configure litellm (blocking, ~5 s); `load_litellm` runs this in a worker thread."""
    # The packaged price map only: litellm otherwise downloads one on import, retrying for seconds offline.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    module = importlib.import_module("litellm")
    # Module-level switches (mypy sees a plain ModuleType): no banner, no telemetry, no retries of its own.
    for setting, value in (("suppress_debug_info", True), ("telemetry", False), ("num_retries", 0)):
        setattr(module, setting, value)
    return module


async def load_litellm() -> ModuleType:
    """litellm, imported once per process in a worker thread so the event loop keeps serving meanwhile."""
    if _Loaded.module is None:
        if _Loaded.lock is None:
            _Loaded.lock = asyncio.Lock()
        async with _Loaded.lock:
            if _Loaded.module is None:
                _Loaded.module = await asyncio.to_thread(import_litellm)
    return _Loaded.module


def _kind_by_class(exc: Exception, litellm: ModuleType) -> ErrorKind | None:
    """The kind litellm's exception class says, most specific first (its classes subclass openai's)."""
    table: list[tuple[tuple[type[BaseException], ...], ErrorKind]] = [
        ((litellm.ContextWindowExceededError,), ErrorKind.CONTEXT_TOO_LONG),
        ((litellm.ContentPolicyViolationError,), ErrorKind.CONTENT_POLICY),
        # NotFoundError: the vendor does not know the model (retired, or never existed).
        ((litellm.NotFoundError,), ErrorKind.RETIRED),
        ((litellm.AuthenticationError, litellm.PermissionDeniedError), ErrorKind.AUTH),
        ((litellm.RateLimitError,), ErrorKind.RATE_LIMITED),
        ((litellm.Timeout,), ErrorKind.TIMEOUT),
        ((litellm.APIConnectionError,), ErrorKind.TRANSIENT),
        (
            (litellm.ServiceUnavailableError, litellm.InternalServerError, litellm.BadGatewayError),
            ErrorKind.TRANSIENT,
        ),
        ((litellm.BadRequestError, litellm.UnprocessableEntityError), ErrorKind.BAD_REQUEST),
    ]
    for classes, kind in table:
        if isinstance(exc, classes):
            return kind
    return None


def _kind_by_status(exc: Exception, status: int | None) -> ErrorKind:
    if status == 410:
        return ErrorKind.RETIRED
    if status in (401, 403):
        return ErrorKind.AUTH
    if isinstance(exc, TimeoutError) or status in (408, 504):
        return ErrorKind.TIMEOUT
    if status is not None and 400 <= status < 500 and status != 409:
        return ErrorKind.BAD_REQUEST
    return ErrorKind.TRANSIENT


def map_litellm_error(
    exc: Exception, litellm: ModuleType, name: str, timeout_s: float, secret: str | None
) -> UpstreamError:
    """The UpstreamError for a litellm exception: by class first, by HTTP status for anything else."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    kind = _kind_by_class(exc, litellm) or _kind_by_status(exc, status)
    if kind is ErrorKind.RATE_LIMITED and "insufficient_quota" in str(exc):
        kind = ErrorKind.AUTH  # out of credit: retrying will not help
    if kind is ErrorKind.TIMEOUT:
        return UpstreamError(kind, f"{name}: no answer within {timeout_s:.1f}s", status=status)
    text = f"{name}: {_redact(str(exc), secret)[:500]}"
    retry_after = _retry_after(exc) if kind in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT) else None
    return UpstreamError(kind, text, status=status, retry_after=retry_after)


def _retry_after(exc: Exception) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not isinstance(headers, Mapping):
        return None
    return parse_retry_after({str(k).lower(): str(v) for k, v in headers.items()})


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text


class LiteLLMProvider:
    kind: ClassVar[str] = "litellm"

    def __init__(self, spec: ProviderSpec, name: str) -> None:
        self.name = name
        self.spec = spec
        self._key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        extra = spec.options.get("extra") or {}
        self._extra: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
        self._drop_params = spec.options.get("drop_params", True) is not False

    def _common(self, ctx: CallContext) -> dict[str, Any]:
        if self.spec.api_key_env and not self._key:
            raise UpstreamError(ErrorKind.AUTH, f"{self.name}: env var {self.spec.api_key_env} is not set")
        args: dict[str, Any] = {
            **self._extra,
            "timeout": ctx.timeout_s,
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": self._drop_params,
        }
        if self._key:
            args["api_key"] = self._key
        if self.spec.base_url:
            args["api_base"] = self.spec.base_url
        return args

    def _error(self, exc: Exception, litellm: ModuleType, ctx: CallContext) -> UpstreamError:
        return map_litellm_error(exc, litellm, self.name, ctx.timeout_s, self._key)

    @staticmethod
    def _params(body: JSON) -> JSON:
        return {k: v for k, v in body.items() if k not in ("model", "stream", "stream_options", "user")}

    async def chat(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        args = self._common(ctx)
        litellm = await load_litellm()
        try:
            response = await litellm.acompletion(model=deployment.model, **self._params(body), **args)
        except Exception as exc:
            raise self._error(exc, litellm, ctx) from exc
        result: JSON = response.model_dump(mode="json", exclude_none=True)
        if not isinstance(result.get("choices"), list):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: chat answer has no choices")
        for choice in result["choices"]:
            # litellm's own extension (citations, thinking blocks); not part of OpenAI's message shape.
            if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                choice["message"].pop("provider_specific_fields", None)
        return ProviderResult(result, usage_from(result.get("usage"), {}))

    async def stream_chat(
        self, deployment: Deployment, body: JSON, ctx: CallContext
    ) -> AsyncIterator[StreamChunk]:
        args = self._common(ctx)
        litellm = await load_litellm()
        finished = False
        try:
            stream = await litellm.acompletion(
                model=deployment.model,
                stream=True,
                stream_options={"include_usage": True},
                **self._params(body),
                **args,
            )
            async for chunk in stream:
                data: JSON = chunk.model_dump(mode="json", exclude_none=True)
                finished = finished or any(c.get("finish_reason") for c in data.get("choices") or ())
                usage = usage_from(data["usage"], {}) if isinstance(data.get("usage"), dict) else None
                yield StreamChunk(data, usage)
        except UpstreamError:
            raise
        except Exception as exc:
            raise self._error(exc, litellm, ctx) from exc
        if not finished:
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: stream ended without a finish_reason")

    async def images(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        raise UpstreamError(
            ErrorKind.BAD_REQUEST,
            f"{self.name}: the litellm provider serves chat and embeddings; "
            "use kind openai, fal or replicate for images",
        )

    async def embeddings(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        args = self._common(ctx)
        litellm = await load_litellm()
        params = {k: v for k, v in self._params(body).items() if k != "input"}
        try:
            response = await litellm.aembedding(
                model=deployment.model, input=body.get("input", ""), **params, **args
            )
        except Exception as exc:
            raise self._error(exc, litellm, ctx) from exc
        result: JSON = response.model_dump(mode="json", exclude_none=True)
        if not isinstance(result.get("data"), list):
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: embedding answer has no data")
        return ProviderResult(result, usage_from(result.get("usage"), {}))

    async def aclose(self) -> None:
        """litellm keeps its HTTP clients in a module-wide cache; nothing here is per provider."""
