"""GET /v1/models: the route names a caller may send as `model`."""

from __future__ import annotations

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response
from gateway.auth import authenticate
from gateway.protocol import ModelCard, ModelList


async def list_models(http: HttpRequest) -> Response:
    authenticate(http, http.app.state.keys)
    loaded = http.app.state.gateway.store.current
    created = int(loaded.loaded_at)
    cards = [ModelCard(id=name, created=created) for name in loaded.policy.routes]
    return json_response(ModelList(data=cards).model_dump())
