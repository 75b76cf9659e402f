"""POST /v1/embeddings."""

from __future__ import annotations

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response, parse
from gateway.policy import Modality
from gateway.protocol import EmbeddingRequest


async def embeddings(http: HttpRequest) -> Response:
    gateway, req = await parse(http, EmbeddingRequest, Modality.EMBEDDING)
    answer = await gateway.complete(req)
    return json_response(answer.body, headers=answer.headers)
