"""The provider seam: one small interface every upstream kind implements.

A provider adapts one kind of upstream (an OpenAI-compatible server, an SDK) to the gateway's own
request and result types. It raises only `gateway.errors.UpstreamError`. Usage (tokens, images,
device-seconds) travels on the result, so pricing never guesses.

Example::

    provider = OpenAICompatibleProvider(spec)
    result = await provider.chat(deployment, {"messages": [...]}, ctx)
    result.body["choices"][0]["message"]["content"], result.usage.completion_tokens
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.policy import Deployment, ProviderSpec

JSON = dict[str, Any]


@dataclass(slots=True)
class Usage:
    """What one upstream call consumed; every field the price can depend on."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    megapixels: float = 0.0
    device_seconds: float = 0.0
    # True when the upstream reported nothing and the gateway estimated (never silently $0).
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ProviderResult:
    """A complete answer: the OpenAI-shaped JSON body and its usage."""

    body: JSON
    usage: Usage


@dataclass(slots=True)
class StreamChunk:
    """One SSE event of a chat stream, as the parsed `chat.completion.chunk` object."""

    data: JSON
    # Usage carried by this chunk (normally only the last one), already converted.
    usage: Usage | None = None


@dataclass(slots=True)
class CallContext:
    """Per-call facts a provider may need: the request id (for upstream logs) and the time left."""

    request_id: str
    timeout_s: float
    extra_headers: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """One upstream kind. Instances are built once per policy provider entry and reused (pooled clients).

    `body` arguments are the client's validated request as a dict; the provider replaces `model` with
    the deployment's upstream model and may drop fields its upstream does not accept.
    """

    kind: ClassVar[str]

    async def chat(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult: ...

    def stream_chat(self, deployment: Deployment, body: JSON, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        """Yield chunks; must raise UpstreamError before the first chunk when the call fails early."""
        ...

    async def images(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult: ...

    async def embeddings(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult: ...

    async def aclose(self) -> None: ...


class ProviderFactory(Protocol):
    def __call__(self, spec: ProviderSpec, name: str) -> Provider: ...
