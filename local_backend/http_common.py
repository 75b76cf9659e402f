"""Pieces every endpoint shares: app state, JSON/error responses, model lookup, cost headers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from local_backend.config import BackendConfig, Modality, ModelConfig
from local_backend.errors import APIError, InvalidRequest, ModelNotFound
from local_backend.metrics import BackendMetrics
from local_backend.worker import Job, JobOutcome, ModelWorker

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class BackendState:
    """Everything the app holds, stored on ``app.state.backend``."""

    config: BackendConfig
    metrics: BackendMetrics
    workers: dict[str, ModelWorker[Any, Any]]


def backend_of(request: Request) -> BackendState:
    """The app's :class:`BackendState`."""
    state: BackendState = request.app.state.backend
    return state


def json_response(body: object, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


def error_response(error: APIError) -> Response:
    """The OpenAI-shaped error body with the error's status and headers."""
    return json_response(error.body(), status_code=error.status_code, headers=error.headers())


async def read_json(request: Request) -> object:
    """The parsed request body; malformed JSON is a 400."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None


def lookup_model(
    request: Request, name: str, modality: Modality
) -> tuple[ModelConfig, ModelWorker[Any, Any]]:
    """The declared model ``name`` and its worker; 404 if undeclared, 400 if of another modality."""
    state = backend_of(request)
    model = state.config.model(name)
    if model is None:
        raise ModelNotFound(f"The model {name!r} does not exist on this local backend", param="model")
    request.state.model_label = name
    if model.modality != modality:
        raise InvalidRequest(
            f"model {name!r} is a {model.modality} model, not a {modality} model", param="model"
        )
    return model, state.workers[name]


async def wait_for_job(job: Job[Any, Any]) -> JobOutcome[Any]:
    """Await a job's outcome; if the client goes away first, tell the worker to skip the job."""
    try:
        return await asyncio.shield(job.future)
    except asyncio.CancelledError:
        job.cancelled = True
        raise


def cost_headers(outcome: JobOutcome[Any]) -> dict[str, str]:
    """Per-request cost headers: device time, the batch it ran in, and time spent queued."""
    return {
        "x-device-seconds": f"{outcome.device_seconds:.6f}",
        "x-batch-size": str(outcome.batch_size),
        "x-queue-seconds": f"{outcome.queue_seconds:.6f}",
    }


def openai_endpoint(endpoint_name: str) -> Callable[[Endpoint], Endpoint]:
    """Wrap a handler: turn :class:`APIError` into its response and count every answer in the metrics."""

    def decorate(handler: Endpoint) -> Endpoint:
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            try:
                response = await handler(request)
            except APIError as error:
                response = error_response(error)
            model_label = getattr(request.state, "model_label", "_undeclared")
            metrics = backend_of(request).metrics
            metrics.requests_total.labels(model_label, endpoint_name, str(response.status_code)).inc()
            return response

        return wrapped

    return decorate
