"""GET /v1/models and /v1/models/{model}: the route names a caller may send as `model`.

A tenant restricted to some routes (`tenants.<name>.routes`) sees only those, and retrieving any other is
404 `model_not_found`, as for a route that does not exist.
"""

from __future__ import annotations

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response
from gateway.auth import authenticate
from gateway.errors import RouteNotFound
from gateway.protocol import ModelCard, ModelList


def _visible(http: HttpRequest) -> tuple[list[str], int]:
    caller = authenticate(http, http.app.state.keys)
    loaded = http.app.state.gateway.store.current
    spec = loaded.policy.tenants.get(caller.tenant)
    names = [n for n in loaded.policy.routes if spec is None or spec.routes is None or n in spec.routes]
    return names, int(loaded.loaded_at)


async def list_models(http: HttpRequest) -> Response:
    names, created = _visible(http)
    return json_response(ModelList(data=[ModelCard(id=n, created=created) for n in names]).model_dump())


async def retrieve_model(http: HttpRequest) -> Response:
    names, created = _visible(http)
    name = http.path_params["model"]
    if name not in names:
        raise RouteNotFound(f"the model {name!r} is not a route of this gateway", param="model")
    return json_response(ModelCard(id=name, created=created).model_dump())
