"""The part of the provider seam an image-only upstream (fal, Replicate) answers with a refusal.

`gateway check` already refuses a chat or embedding deployment on such a provider; this is the run-time
answer should one reach it anyway: a bad request, never retried, never a crash.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar

from gateway.errors import ErrorKind, UpstreamError
from providers.base import JSON, CallContext, ProviderResult, StreamChunk

if TYPE_CHECKING:
    from gateway.policy import Deployment


class ImagesOnly:
    kind: ClassVar[str]
    name: str

    def _refuse(self) -> UpstreamError:
        return UpstreamError(
            ErrorKind.BAD_REQUEST, f"{self.name}: the {self.kind} provider serves images only"
        )

    async def chat(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        raise self._refuse()

    async def stream_chat(
        self, deployment: Deployment, body: JSON, ctx: CallContext
    ) -> AsyncIterator[StreamChunk]:
        raise self._refuse()
        yield  # pragma: no cover  (makes this an async generator)

    async def embeddings(self, deployment: Deployment, body: JSON, ctx: CallContext) -> ProviderResult:
        raise self._refuse()
