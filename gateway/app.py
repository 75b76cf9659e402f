"""The composition root: build_app() wires every object once and keeps them on app.state.

Example::

    app = build_app(Settings(policy_path=Path("policies/default.yaml")))
    uvicorn.run(app)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway.accounting import Accounting
from gateway.admission import Admission
from gateway.api import admin, chat, embeddings, health, images, models, responses
from gateway.api.common import error_response, json_response, request_id
from gateway.budgets import seed_budgets
from gateway.database import Database
from gateway.errors import GatewayError, InvalidRequest, RouteNotFound
from gateway.fallback import FallbackRunner
from gateway.keys import KeyStore
from gateway.ledger import Ledger
from gateway.metrics import Metrics
from gateway.openapi import openapi_document
from gateway.policy import Policy
from gateway.policy_store import PolicyStore, ProviderBuilder
from gateway.providers_env import provider_secrets
from gateway.serving import Gateway
from gateway.settings import Settings
from gateway.shared_state import build_shared_state
from providers.registry import build_provider

log = logging.getLogger("gateway")

Endpoint = Callable[[HttpRequest], Awaitable[Response]]


async def _gateway_error(http: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    secrets = provider_secrets(http.app.state.gateway.store.current.policy)
    return error_response(exc, request_id(http), secrets)


async def _http_error(http: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: GatewayError = RouteNotFound(f"no endpoint {http.url.path}", code="unknown_url")
    else:
        err = InvalidRequest(f"{http.method} is not allowed on {http.url.path}", code="method_not_allowed")
        err.status = exc.status_code
    return error_response(err, request_id(http))


async def _server_error(http: HttpRequest, exc: Exception) -> Response:
    log.exception("unexpected error serving %s", http.url.path)
    err = GatewayError("the gateway failed unexpectedly; the error is logged under this request id")
    return error_response(err, request_id(http))


async def _openapi(http: HttpRequest) -> Response:
    return json_response(http.app.state.openapi)


class GatewayApp(Starlette):
    """Starlette, with the /v1 POST endpoints served by a direct dispatch in front of its middleware.

    Those endpoints take every request the gateway serves; Starlette's middleware stack, router and
    exception wrappers cost more per request than the endpoint's own work. The dispatch below keeps
    their behaviour: GatewayError and HTTPException map to their handlers, anything else becomes the
    logged 500 and is re-raised (as ServerErrorMiddleware does), and an error after the response has
    started is re-raised for the server to close the connection. Everything else goes to Starlette.
    """

    fast_routes: dict[str, Endpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.fast_routes.get(scope["path"])
            if endpoint is not None:
                await self._dispatch(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _dispatch(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        http = HttpRequest(scope, receive, send)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            response = await endpoint(http)
            await response(scope, receive, sender)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, GatewayError):
                response = await _gateway_error(http, exc)
            elif isinstance(exc, HTTPException):
                response = await _http_error(http, exc)
            else:
                await (await _server_error(http, exc))(scope, receive, send)
                raise
            await response(scope, receive, send)


def build_app(
    settings: Settings, *, policy: Policy | None = None, provider_builder: ProviderBuilder = build_provider
) -> Starlette:
    """Build the ASGI app. `policy` overrides the file (tests); otherwise settings.policy_path is loaded."""
    metrics = Metrics()
    if policy is None:
        store = PolicyStore.from_file(settings.policy_path, metrics, provider_builder=provider_builder)
    else:
        store = PolicyStore(policy, metrics, provider_builder=provider_builder)
    shared = build_shared_state(
        lambda: store.current.policy.fallback.breaker, settings.redis_url, settings.redis_prefix
    )
    breakers = shared.breakers
    db = Database(settings.ledger_path)
    ledger = Ledger(db)
    keys = KeyStore(db)
    budgets = shared.budgets
    accounting = Accounting(metrics, ledger)
    admission = Admission(budgets, shared.limiter, metrics)
    gateway = Gateway(store, breakers, accounting, FallbackRunner(breakers, metrics), admission)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(ledger.start)
        await asyncio.to_thread(keys.refresh)
        await asyncio.to_thread(seed_budgets, db, budgets)
        await shared.start()
        if not keys.configured():
            log.warning("no API keys configured: serving without authentication, to loopback clients only")
        key_refresher = asyncio.create_task(_refresh_keys(keys, settings.keys_refresh_s))
        watcher = None
        if store.path is not None:
            store.install_sighup()
            if settings.watch_policy:
                watcher = asyncio.create_task(store.watch(settings.watch_interval_s))
        try:
            yield
        finally:
            key_refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await key_refresher
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await store.aclose()
            await ledger.aclose()
            await shared.aclose()

    routes = [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/responses", responses.create_response, methods=["POST"]),
        Route("/v1/images/generations", images.image_generations, methods=["POST"]),
        Route("/v1/embeddings", embeddings.embeddings, methods=["POST"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", models.retrieve_model, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/admin/policy", admin.show_policy, methods=["GET"]),
        Route("/admin/reload", admin.reload_policy, methods=["POST"]),
        Route("/admin/explain", admin.explain, methods=["POST"]),
        Route("/admin/deployments", admin.deployments, methods=["GET"]),
        Route("/admin/deployments/{name}/restore", admin.restore, methods=["POST"]),
    ]
    handlers: dict[Any, Any] = {
        GatewayError: _gateway_error,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = GatewayApp(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.fast_routes = {
        "/v1/chat/completions": chat.chat_completions,
        "/v1/responses": responses.create_response,
        "/v1/images/generations": images.image_generations,
        "/v1/embeddings": embeddings.embeddings,
    }
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.keys = keys
    app.state.openapi = openapi_document()
    return app


async def _refresh_keys(keys: KeyStore, every_s: float) -> None:
    """Pick up keys created or revoked by `gateway keys` (another process) within seconds."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(keys.refresh)
        except Exception:  # a database hiccup must not stop the refresher; the last good cache stays
            log.exception("could not refresh API keys; keeping the cached set")


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` and worker processes: settings come from the environment."""
    return build_app(Settings.from_env())
