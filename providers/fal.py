"""fal.ai image generation (FLUX schnell/dev/pro, ...) through fal-client's asynchronous queue API.

The deployment's `model` is the fal app id (`fal-ai/flux/schnell`, `fal-ai/flux-pro/v1.1`). An OpenAI
images request becomes fal arguments: `size` "WxH" -> `image_size {width, height}` (or a fal enum such as
"square_hd" passed as is), `n` -> `num_images`, `seed`, and the extension fields `num_inference_steps`
(alias `steps`), `guidance_scale`, `negative_prompt`, `enable_safety_checker`. The answer is OpenAI-shaped:
`url` items, or `b64_json` when the caller asked for it (fal's `sync_mode` data URIs, or the image fetched
over a pooled HTTP client when the app ignores sync_mode).

Options (`providers.<name>.options`):
    arguments: dict      default fal arguments merged under every request (e.g. {enable_safety_checker: true})

Example policy entry::

    providers:
      fal: {kind: fal, api_key_env: FAL_KEY, timeout_s: 120}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

import fal_client
import fal_client.client
import httpx

from gateway.errors import ErrorKind, UpstreamError
from providers.base import JSON, CallContext, ProviderResult, Usage
from providers.errors import parse_retry_after
from providers.images_only import ImagesOnly

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec

# fal-client retries 408/409/429, ingress 502-504 and every transport error up to 10 times with backoff and
# offers no setting for it. The gateway's fallback owns retries (and must see a 429 with its Retry-After
# before the request's deadline), so fal-client makes one attempt per HTTP call in this process.
fal_client.client.MAX_ATTEMPTS = 1

# Fields of an OpenAI images request that fal apps take under their own name.
_PASSTHROUGH = ("seed", "num_inference_steps", "guidance_scale", "negative_prompt", "enable_safety_checker")
_CONTENT_POLICY_WORDS = ("content_policy", "content policy", "nsfw", "safety")


def fal_arguments(body: JSON, defaults: JSON) -> JSON:
    """fal arguments for an OpenAI images request body."""
    args: JSON = {**defaults, "prompt": str(body.get("prompt", ""))}
    size = body.get("size")
    if isinstance(size, str) and size and size != "auto":
        width, _, height = size.partition("x")
        if width.isdigit() and height.isdigit():
            args["image_size"] = {"width": int(width), "height": int(height)}
        else:
            args["image_size"] = size  # a fal enum: square_hd, landscape_16_9, ...
    if body.get("n") is not None:
        args["num_images"] = int(body["n"])
    if body.get("steps") is not None:
        args["num_inference_steps"] = int(body["steps"])
    for field in _PASSTHROUGH:
        if body.get(field) is not None:
            args[field] = body[field]
    if body.get("response_format") == "b64_json":
        args["sync_mode"] = True  # fal answers with data URIs: no second fetch
    return args


def map_fal_error(exc: Exception, name: str, timeout_s: float, secret: str | None) -> UpstreamError:
    """The UpstreamError for a fal-client or httpx exception, most specific first."""
    if isinstance(exc, (fal_client.FalClientTimeoutError, TimeoutError)):
        return UpstreamError(
            ErrorKind.TIMEOUT, f"{name}: no result within {timeout_s:.1f}s (request cancelled)"
        )
    if isinstance(exc, fal_client.FalClientHTTPError):
        status = exc.status_code
        detail = str(exc.message)
        detail = detail.replace(secret, "[redacted]") if secret else detail
        text = (
            f"{name}: HTTP {status}" + (f" {exc.error_type}" if exc.error_type else "") + f": {detail[:300]}"
        )
        lowered = f"{exc.error_type or ''} {detail}".lower()
        if status == 429:
            headers = {k.lower(): v for k, v in exc.response_headers.items()}
            return UpstreamError(
                ErrorKind.RATE_LIMITED, text, status=status, retry_after=parse_retry_after(headers)
            )
        if status in (404, 410):
            return UpstreamError(ErrorKind.RETIRED, text, status=status)  # fal has no such app (any more)
        if status in (401, 403):
            return UpstreamError(ErrorKind.AUTH, text, status=status)
        if status in (408, 504):
            return UpstreamError(ErrorKind.TIMEOUT, text, status=status)
        if status >= 500:
            return UpstreamError(ErrorKind.TRANSIENT, text, status=status)
        if any(word in lowered for word in _CONTENT_POLICY_WORDS):
            return UpstreamError(ErrorKind.CONTENT_POLICY, text, status=status)
        return UpstreamError(ErrorKind.BAD_REQUEST, text, status=status)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(ErrorKind.TIMEOUT, f"{name}: no answer within {timeout_s:.1f}s")
    return UpstreamError(ErrorKind.TRANSIENT, f"{name}: {type(exc).__name__} talking to fal")


class FalProvider(ImagesOnly):
    kind: ClassVar[str] = "fal"

    def __init__(self, spec: ProviderSpec, name: str) -> None:
        self.name = name
        self.spec = spec
        self._key = os.environ.get(spec.api_key_env or "FAL_KEY")
        defaults = spec.options.get("arguments") or {}
        self._defaults: JSON = dict(defaults) if isinstance(defaults, dict) else {}
        self._client: fal_client.AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None

    def _fal(self) -> fal_client.AsyncClient:
        if not self._key:
            raise UpstreamError(
                ErrorKind.AUTH, f"{self.name}: env var {self.spec.api_key_env or 'FAL_KEY'} is not set"
            )
        if self._client is None:
            self._client = fal_client.AsyncClient(key=self._key, default_timeout=self.spec.timeout_s)
        return self._client

    def _fetcher(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.spec.timeout_s, connect=self.spec.connect_timeout_s),
                limits=httpx.Limits(max_connections=self.spec.max_connections),
            )
        return self._http

    async def images(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        client = self._fal()
        arguments = fal_arguments(body, self._defaults)
        try:
            result = await self._run(client, deployment.model, arguments, ctx.timeout_s)
        except (fal_client.FalClientError, httpx.HTTPError, TimeoutError) as exc:
            raise map_fal_error(exc, self.name, ctx.timeout_s, self._key) from exc
        images = result.get("images") if isinstance(result, dict) else None
        if not isinstance(images, list) or not images:
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: fal answered without images")
        flagged = result.get("has_nsfw_concepts") or []
        kept = [img for i, img in enumerate(images) if not (i < len(flagged) and flagged[i])]
        if not kept:
            raise UpstreamError(
                ErrorKind.CONTENT_POLICY, f"{self.name}: fal's safety checker blanked every image"
            )
        # Every generated image is billed, including the ones the safety checker blanked.
        usage = Usage(images=len(images), megapixels=sum(_megapixels(img) for img in images))
        want_b64 = body.get("response_format") == "b64_json"
        data = [await self._item(img, want_b64, ctx) for img in kept]
        answer: JSON = {"created": int(time.time()), "data": data}
        if isinstance(result.get("seed"), int):
            answer["seed"] = result["seed"]
        return ProviderResult(answer, usage)

    @staticmethod
    async def _run(client: fal_client.AsyncClient, app: str, arguments: JSON, timeout_s: float) -> Any:
        """Submit to fal's queue and wait for the result; past the deadline, cancel the queued request.

        (fal-client's `subscribe(client_timeout=...)` does the same but refuses timeouts under 1 s.)
        """
        handle: fal_client.AsyncRequestHandle | None = None
        try:
            async with asyncio.timeout(timeout_s):
                handle = await client.submit(app, arguments)
                return await handle.get()
        except TimeoutError:
            if handle is not None:  # best effort, so the request stops costing money
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await handle.cancel()
            raise

    async def _item(self, image: Any, want_b64: bool, ctx: CallContext) -> JSON:
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise UpstreamError(ErrorKind.TRANSIENT, f"{self.name}: fal image without a url")
        if not want_b64:
            return {"url": url}
        if url.startswith("data:"):
            return {"b64_json": url.partition(",")[2]}
        try:
            resp = await self._fetcher().get(url, timeout=ctx.timeout_s)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise UpstreamError(
                ErrorKind.TRANSIENT, f"{self.name}: could not fetch the generated image"
            ) from exc
        return {"b64_json": base64.b64encode(resp.content).decode()}

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._client is not None:
            # fal-client opens its pooled httpx client on first use and offers no close(); it is cached as the
            # awaitable attribute `_client`.
            fal_http = await self._client._client
            await fal_http.aclose()
            self._client = None


def _megapixels(image: Any) -> float:
    if (
        isinstance(image, dict)
        and isinstance(image.get("width"), int)
        and isinstance(image.get("height"), int)
    ):
        return float(image["width"] * image["height"]) / 1e6
    return 0.0
