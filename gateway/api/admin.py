"""Operator endpoints under /admin: policy, reload, explain, deployment states, restore.

Guarded by the admin key when one is set (GATEWAY_ADMIN_KEY), otherwise open to loopback clients only.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response, read_json
from gateway.api.health import deployment_states
from gateway.auth import is_loopback, tenant_from_header
from gateway.errors import AuthenticationFailed, GatewayError, InvalidRequest, RouteNotFound
from gateway.serving import Gateway


class AdminForbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "admin_only"


def _guard(http: HttpRequest) -> Gateway:
    key: str | None = http.app.state.settings.admin_key
    if key:
        given = http.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise AuthenticationFailed("admin endpoints need the admin key", code="invalid_admin_key")
    elif not is_loopback(http):
        raise AdminForbidden("admin endpoints answer loopback clients only when no admin key is set")
    gateway: Gateway = http.app.state.gateway
    return gateway


async def show_policy(http: HttpRequest) -> Response:
    gateway = _guard(http)
    loaded = gateway.store.current
    policy = loaded.policy
    return json_response(
        {
            "source": loaded.source,
            "loaded_at": loaded.loaded_at,
            "routes": {
                n: {"candidates": r.candidates, "strategy": r.strategy.value}
                for n, r in policy.routes.items()
            },
            "deployments": {
                n: {
                    "provider": d.provider,
                    "model": d.model,
                    "modality": d.modality.value,
                    "openness": d.openness.value,
                    "data_location": d.data.location.value,
                }
                for n, d in policy.deployments.items()
            },
        }
    )


async def reload_policy(http: HttpRequest) -> Response:
    gateway = _guard(http)
    ok, message = await gateway.store.reload()
    return json_response({"reloaded": ok, "message": message}, 200 if ok else 422)


async def explain(http: HttpRequest) -> Response:
    """Body: {"request": {...the OpenAI body...}, "headers": {"x-data-classification": "..."}}."""
    gateway = _guard(http)
    body = await read_json(http, gateway.store.current.policy.limits.max_body_bytes)
    request, headers = body.get("request"), body.get("headers") or {}
    if not isinstance(request, dict) or not isinstance(headers, dict):
        raise InvalidRequest('explain takes {"request": {...}, "headers": {...}}', param="request")
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    tenant = lowered.get("x-tenant") or tenant_from_header(http)
    return json_response(gateway.explain(request, lowered, tenant))


async def deployments(http: HttpRequest) -> Response:
    gateway = _guard(http)
    return json_response({"deployments": deployment_states(gateway), "retired": gateway.breakers.retired()})


async def restore(http: HttpRequest) -> Response:
    gateway = _guard(http)
    name = http.path_params["name"]
    if name not in gateway.store.current.policy.deployments:
        raise RouteNotFound(f"no deployment named {name!r}", code="deployment_not_found")
    was_retired = gateway.breakers.restore(name)
    return json_response({"deployment": name, "restored": was_retired})
