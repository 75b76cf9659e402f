"""POST /v1/responses: the Responses API on chat routes, plain JSON or an SSE stream of typed events."""

from __future__ import annotations

import time

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response, parse
from gateway.api.sse import SSEResponse
from gateway.policy import Modality
from gateway.protocol import ResponsesRequest
from gateway.responses import chat_body, new_id, response_object
from gateway.responses_stream import ResponseEvents


async def create_response(http: HttpRequest) -> Response:
    gateway, req = await parse(http, ResponsesRequest, Modality.CHAT, translate=chat_body)
    assert req.source is not None
    response_id, created_at = new_id("resp"), int(time.time())
    if req.body.get("stream"):
        stream = await gateway.open_stream(req)
        events = ResponseEvents(req.source, response_id, created_at)
        return SSEResponse(stream.sse(events), stream.headers)
    answer = await gateway.complete(req)
    body = response_object(req.source, answer.body, response_id, created_at)
    return json_response(body, headers=answer.headers)
