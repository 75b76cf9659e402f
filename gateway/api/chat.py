"""POST /v1/chat/completions: plain JSON or an SSE stream."""

from __future__ import annotations

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response, parse
from gateway.api.sse import SSEResponse
from gateway.policy import Modality
from gateway.protocol import ChatCompletionRequest


async def chat_completions(http: HttpRequest) -> Response:
    gateway, req = await parse(http, ChatCompletionRequest, Modality.CHAT)
    if req.body.get("stream"):
        stream = await gateway.open_stream(req)
        return SSEResponse(stream.sse(), stream.headers)
    answer = await gateway.complete(req)
    return json_response(answer.body, headers=answer.headers)
