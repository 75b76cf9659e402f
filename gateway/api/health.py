"""GET /healthz (the process answers), /readyz (every route has a deployment it could use), /metrics."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.api.common import json_response
from gateway.breaker import BreakerState
from gateway.metrics import CONTENT_TYPE
from gateway.serving import Gateway


async def healthz(http: HttpRequest) -> Response:
    return json_response({"status": "ok"})


def deployment_states(gateway: Gateway) -> dict[str, str]:
    policy = gateway.store.current.policy
    today = gateway.today()
    states: dict[str, str] = {}
    for name, dep in policy.deployments.items():
        state = str(gateway.breakers.state(name))
        if (
            state == BreakerState.CLOSED
            and dep.deprecation_date is not None
            and dep.deprecation_date <= today
        ):
            state = "deprecated"
        states[name] = state
    return states


async def readyz(http: HttpRequest) -> Response:
    gateway: Gateway = http.app.state.gateway
    states = deployment_states(gateway)
    policy = gateway.store.current.policy
    routes = {
        name: any(states[c] in (BreakerState.CLOSED, BreakerState.HALF_OPEN) for c in route.candidates)
        for name, route in policy.routes.items()
    }
    ready = all(routes.values())
    body = {"status": "ready" if ready else "degraded", "routes": routes, "deployments": states}
    return json_response(body, 200 if ready else 503)


async def metrics(http: HttpRequest) -> Response:
    gateway: Gateway = http.app.state.gateway
    m = gateway.accounting.metrics
    today = gateway.today()
    for name, state in deployment_states(gateway).items():
        m.set_state(name, state)
        dep = gateway.store.current.policy.deployments[name]
        if dep.deprecation_date is not None:
            m.deprecation_days.labels(name).set((dep.deprecation_date - today) / dt.timedelta(days=1))
    for tenant, scope, period, limit, remaining in gateway.admission.budgets.snapshot():
        m.budget_limit.labels(tenant, scope, period).set(limit)
        m.budget_remaining.labels(tenant, scope, period).set(remaining)
    ledger = gateway.accounting.ledger
    m.ledger_writable.set(0 if ledger.failing else 1)
    m.ledger_backlog.set(ledger.backlog)
    return Response(m.exposition(), media_type=CONTENT_TYPE)
