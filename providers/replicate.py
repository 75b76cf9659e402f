"""Replicate image generation (the FLUX family) through the `replicate` SDK's async API.

The deployment's `model` is a Replicate reference: `black-forest-labs/flux-schnell` (an official model,
served by `POST /v1/models/{owner}/{name}/predictions`) or `owner/name:version`. The prediction is created
with `Prefer: wait=N` (N = the call's time left, at most 60 s, Replicate's limit), so a fast model answers
in one round trip; slower ones are polled until done or until the call's deadline.

An OpenAI images request becomes FLUX input: `size` "WxH" -> `aspect_ratio` when it is one of FLUX's ratios
(else `width`/`height` with aspect_ratio "custom"), `n` -> `num_outputs`, `seed`, and the extension fields
`num_inference_steps` (alias `steps`), `output_format`, `go_fast`, `guidance`. Outputs (FileOutput objects
or URLs) come back as `url` items, or `b64_json` when the caller asked.

Options (`providers.<name>.options`):
    input: dict              default input merged under every request (e.g. {output_format: png})
    poll_interval_s: float   seconds between polls of a prediction still running (default 0.5)

Example policy entry::

    providers:
      replicate: {kind: replicate, api_key_env: REPLICATE_API_TOKEN, timeout_s: 120}
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
import time
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import replicate.client
import replicate.exceptions
from replicate.exceptions import ModelError, ReplicateError
from replicate.helpers import FileOutput

from gateway.errors import ErrorKind, UpstreamError
from providers.base import JSON, CallContext, ProviderResult, Usage
from providers.images_only import ImagesOnly

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec

_ASPECT_RATIOS = frozenset({"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"})
_PASSTHROUGH = (
    "seed",
    "num_inference_steps",
    "output_format",
    "go_fast",
    "guidance",
    "disable_safety_checker",
)
_CONTENT_POLICY_WORDS = ("nsfw", "content policy", "flagged", "sensitive")
# Replicate's 429 problem detail: "Request was throttled. Expected available in 3 seconds."
_THROTTLE = re.compile(r"available in (\d+(?:\.\d+)?) second")


def replicate_input(body: JSON, defaults: JSON) -> tuple[JSON, float]:
    """FLUX input for an OpenAI images request, and the megapixels each output will have."""
    args: JSON = {**defaults, "prompt": str(body.get("prompt", ""))}
    megapixels = 1.0
    size = body.get("size")
    if isinstance(size, str) and "x" in size:
        width_s, _, height_s = size.partition("x")
        if width_s.isdigit() and height_s.isdigit():
            width, height = int(width_s), int(height_s)
            divisor = math.gcd(width, height)
            ratio = f"{width // divisor}:{height // divisor}"
            if ratio in _ASPECT_RATIOS:
                args["aspect_ratio"] = ratio
            else:
                args.update(aspect_ratio="custom", width=width, height=height)
            megapixels = width * height / 1e6
    if body.get("n") is not None:
        args["num_outputs"] = int(body["n"])
    if body.get("steps") is not None:
        args["num_inference_steps"] = int(body["steps"])
    for field in _PASSTHROUGH:
        if body.get(field) is not None:
            args[field] = body[field]
    return args, megapixels


def map_replicate_error(exc: Exception, name: str, timeout_s: float, secret: str | None) -> UpstreamError:
    """The UpstreamError for a replicate SDK or httpx exception, most specific first."""
    if isinstance(exc, ModelError):
        detail = str(exc.prediction.error or "prediction failed")[:300]
        kind = ErrorKind.CONTENT_POLICY if _mentions_policy(detail) else ErrorKind.TRANSIENT
        return UpstreamError(kind, f"{name}: prediction failed: {detail}")
    if isinstance(exc, ReplicateError):
        status = exc.status or 0
        detail = f"{exc.title or ''}: {exc.detail or ''}".strip(": ")
        detail = detail.replace(secret, "[redacted]") if secret else detail
        text = f"{name}: HTTP {status}: {detail[:300]}"
        if status == 429:
            match = _THROTTLE.search(exc.detail or "")
            retry_after = float(match.group(1)) if match else None
            return UpstreamError(ErrorKind.RATE_LIMITED, text, status=status, retry_after=retry_after)
        if status in (404, 410):
            return UpstreamError(ErrorKind.RETIRED, text, status=status)  # no such model (any more)
        if status in (401, 402, 403):
            return UpstreamError(ErrorKind.AUTH, text, status=status)  # 402: billing, like insufficient_quota
        if status in (408, 504):
            return UpstreamError(ErrorKind.TIMEOUT, text, status=status)
        if status >= 500 or status == 0:
            return UpstreamError(ErrorKind.TRANSIENT, text, status=status or None)
        if _mentions_policy(detail):
            return UpstreamError(ErrorKind.CONTENT_POLICY, text, status=status)
        return UpstreamError(ErrorKind.BAD_REQUEST, text, status=status)
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return UpstreamError(ErrorKind.TIMEOUT, f"{name}: no result within {timeout_s:.1f}s")
    return UpstreamError(ErrorKind.TRANSIENT, f"{name}: {type(exc).__name__} talking to Replicate")


def _mentions_policy(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _CONTENT_POLICY_WORDS)


class ReplicateProvider(ImagesOnly):
    kind: ClassVar[str] = "replicate"

    def __init__(self, spec: ProviderSpec, name: str) -> None:
        self.name = name
        self.spec = spec
        self._key = os.environ.get(spec.api_key_env or "REPLICATE_API_TOKEN")
        defaults = spec.options.get("input") or {}
        self._defaults: JSON = dict(defaults) if isinstance(defaults, dict) else {}
        self._poll_interval = float(spec.options.get("poll_interval_s", 0.5))
        self._client: replicate.client.Client | None = None

    def _replicate(self) -> replicate.client.Client:
        if not self._key:
            env = self.spec.api_key_env or "REPLICATE_API_TOKEN"
            raise UpstreamError(ErrorKind.AUTH, f"{self.name}: env var {env} is not set")
        if self._client is None:
            client = replicate.client.Client(
                api_token=self._key,
                base_url=self.spec.base_url,
                timeout=httpx.Timeout(self.spec.timeout_s, connect=self.spec.connect_timeout_s),
            )
            client.poll_interval = self._poll_interval
            # The SDK's transport retries GET polls on 429/503/504 up to 10 times, with no setting for it;
            # the gateway's fallback owns retries, so one attempt per HTTP call.
            transport = getattr(client._async_client, "_transport", None)
            if isinstance(transport, replicate.client.RetryTransport):
                transport.max_attempts = 1
            self._client = client
        return self._client

    async def images(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        client = self._replicate()
        arguments, megapixels = replicate_input(body, self._defaults)
        wait = max(1, min(60, int(ctx.timeout_s)))
        try:
            async with asyncio.timeout(ctx.timeout_s):
                output: Any = await client.async_run(deployment.model, input=arguments, wait=wait)
                outputs = output if isinstance(output, list) else [output]
                if not outputs or any(not isinstance(o, (FileOutput, str)) for o in outputs):
                    raise UpstreamError(
                        ErrorKind.TRANSIENT, f"{self.name}: the model answered without images"
                    )
                want_b64 = body.get("response_format") == "b64_json"
                data = [await self._item(o, want_b64) for o in outputs]
        except UpstreamError:
            raise
        except (replicate.exceptions.ReplicateException, httpx.HTTPError, TimeoutError) as exc:
            raise map_replicate_error(exc, self.name, ctx.timeout_s, self._key) from exc
        usage = Usage(images=len(data), megapixels=megapixels * len(data))
        return ProviderResult({"created": int(time.time()), "data": data}, usage)

    async def _item(self, output: FileOutput | str, want_b64: bool) -> JSON:
        url = output.url if isinstance(output, FileOutput) else output
        if not want_b64:
            return {"url": url}
        if isinstance(output, FileOutput):
            content = await output.aread()
        else:  # a plain (non-https) URL the SDK left as a string
            assert self._client is not None
            response = await self._client._async_client.get(url)
            response.raise_for_status()
            content = response.content
        return {"b64_json": base64.b64encode(content).decode()}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client._async_client.aclose()
            self._client = None
