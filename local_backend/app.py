"""The ASGI app: ``build_app(config)`` wires routes, per-model workers and metrics onto ``app.state``.

Nothing here imports torch: model libraries are imported by the runner modules, on each worker's thread,
when a model is first loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local_backend.config import BackendConfig, ModelConfig
from local_backend.device import configure_torch_threads
from local_backend.errors import APIError, ModelNotFound
from local_backend.http_chat import create_chat_completion
from local_backend.http_common import BackendState, backend_of, error_response, json_response
from local_backend.http_embeddings import create_embeddings
from local_backend.http_images import create_images
from local_backend.metrics import BackendMetrics
from local_backend.sources import resolve_source
from local_backend.worker import ModelRunner, ModelWorker

logger = logging.getLogger(__name__)

_RUNNER_LOADERS = {
    "chat": ("local_backend.runners.chat", "load_chat_runner"),
    "image": ("local_backend.runners.image", "load_image_runner"),
    "embedding": ("local_backend.runners.embedding", "load_embedding_runner"),
}
_STARTED_AT = int(time.time())


def _runner_loader(model: ModelConfig, torch_threads: int | None) -> Callable[[], ModelRunner[Any, Any]]:
    module_name, function_name = _RUNNER_LOADERS[model.modality]

    def load() -> ModelRunner[Any, Any]:
        # Resolve first: a model that cannot be found fails in milliseconds, before torch is imported.
        source = resolve_source(model.source, config_files_only=model.random_weights)
        configure_torch_threads(torch_threads)
        loader = getattr(importlib.import_module(module_name), function_name)
        runner: ModelRunner[Any, Any] = loader(model, source)
        return runner

    return load


def _make_workers(config: BackendConfig, metrics: BackendMetrics) -> dict[str, ModelWorker[Any, Any]]:
    return {
        model.name: ModelWorker(
            model,
            _runner_loader(model, config.torch_threads),
            metrics,
            retry_failed_load_after_s=config.retry_failed_load_after_s,
            batching=model.modality != "chat",  # generation is not batched (see runners/chat.py)
        )
        for model in config.models
    }


async def healthz(request: Request) -> Response:
    """The process is alive and serving HTTP."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 once every ``load: startup`` model is loaded; 503 (with each one's state) until then."""
    state = backend_of(request)
    startup = [model.name for model in state.config.models if model.load == "startup"]
    models = {
        name: {"state": state.workers[name].state, "error": state.workers[name].load_error or None}
        for name in startup
    }
    ready = all(entry["state"] == "loaded" for entry in models.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "models": models}, status_code=200 if ready else 503
    )


def _model_card(model: ModelConfig, worker: ModelWorker[Any, Any]) -> dict[str, object]:
    return {
        "id": model.name,
        "object": "model",
        "created": _STARTED_AT,
        "owned_by": "local-backend",
        "modality": model.modality,
        "state": worker.state,
    }


async def list_models(request: Request) -> Response:
    """Every declared model, loaded or not."""
    state = backend_of(request)
    cards = [_model_card(model, state.workers[model.name]) for model in state.config.models]
    return json_response({"object": "list", "data": cards})


async def retrieve_model(request: Request) -> Response:
    """One declared model."""
    state = backend_of(request)
    name = request.path_params["name"]
    model = state.config.model(name)
    if model is None:
        return error_response(
            ModelNotFound(f"The model {name!r} does not exist on this local backend", param="model")
        )
    return json_response(_model_card(model, state.workers[name]))


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of the app's own registry."""
    return Response(
        backend_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = APIError(exc.detail)
    error.status_code, error.error_type = exc.status_code, "invalid_request_error"
    error.code = (
        "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
    )
    return error_response(error)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(APIError(f"internal error: {type(exc).__name__}"))


def build_app(config: BackendConfig) -> Starlette:
    """A ready-to-serve app for ``config``; workers start (and startup models load) in its lifespan."""
    metrics = BackendMetrics()
    state = BackendState(config=config, metrics=metrics, workers=_make_workers(config, metrics))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for model in config.models:
            worker = state.workers[model.name]
            worker.start()
            if model.load == "startup":
                worker.request_load()  # in the background: /healthz answers while it loads
        try:
            yield
        finally:
            for worker in state.workers.values():
                worker.stop(timeout_s=5.0)

    routes = [
        Route("/v1/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/v1/images/generations", create_images, methods=["POST"]),
        Route("/v1/embeddings", create_embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{name:path}", retrieve_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
    )
    app.state.backend = state
    return app
