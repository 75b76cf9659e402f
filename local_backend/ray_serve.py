"""The local backend as a Ray Serve application: the same /v1 endpoints, spread over GPUs and nodes.

Layout (the only module that imports Ray):

* one **ingress** deployment runs the backend's own Starlette app (``build_app``) through
  ``@serve.ingress``, so routing, validation, error bodies, cost headers and metrics are the same code as
  ``local-backend serve``;
* every **image** and **embedding** model is its own deployment whose replicas load the model once and
  run requests through ``@serve.batch`` (Ray's dynamic batching, sized by ``batching.max_batch_size``
  counted in images/inputs, waiting ``batching.max_wait_ms``).  The ingress reaches it through a
  :class:`DeploymentHandle` wrapped to look like the in-process ``ModelWorker`` the endpoints expect;
* **chat** models stay inside the ingress replicas (the in-process worker): token streaming relies on
  callbacks that do not cross process boundaries.  Scale them with ``ray_ingress``.

Replica counts, autoscaling and resources come from each model's ``ray:`` section (``ray_ingress`` for
the ingress); ``batching.max_queue`` becomes Ray's ``max_queued_requests`` (answered 503 overloaded).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import re
import signal
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast

from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from local_backend.app import build_app
from local_backend.config import BackendConfig, ConfigError, ModelConfig, RayDeploymentConfig
from local_backend.device import configure_torch_threads
from local_backend.errors import APIError, InferenceFailed, ModelUnavailable, Overloaded
from local_backend.sources import resolve_source
from local_backend.worker import BatchablePayload, Job, JobOutcome, ModelRunner, ModelWorker

logger = logging.getLogger(__name__)

_BATCHED_MODALITIES = ("image", "embedding")
_RUNNER_LOADERS = {
    "image": ("local_backend.runners.image", "load_image_runner"),
    "embedding": ("local_backend.runners.embedding", "load_embedding_runner"),
}
_INGRESS_MAX_ONGOING = 256  # the ingress only validates and awaits; it should never be the bottleneck


@dataclass(frozen=True)
class RemoteFailure:
    """An :class:`APIError` raised in a model replica, sent back as a value.

    Returned rather than raised: Ray would wrap the exception, and re-creating error classes with
    keyword-only constructor arguments (``Overloaded``) from a pickle fails.
    """

    status_code: int
    body: dict[str, object]
    headers: dict[str, str]

    @classmethod
    def of(cls, error: APIError) -> RemoteFailure:
        return cls(error.status_code, error.body(), error.headers())


class _ReplayedError(APIError):
    """A replica's :class:`RemoteFailure` raised again in the ingress, with its status, body and headers."""

    def __init__(self, failure: RemoteFailure) -> None:
        detail = failure.body.get("error")
        message = str(detail.get("message", "")) if isinstance(detail, dict) else ""
        super().__init__(message)
        self.status_code = failure.status_code
        self._failure = failure

    def body(self) -> dict[str, object]:
        return self._failure.body

    def headers(self) -> dict[str, str]:
        return self._failure.headers


def _load_runner(model: ModelConfig, torch_threads: int | None) -> ModelRunner[Any, Any]:
    # Same steps as the in-process backend: resolve first (fails fast when weights are missing).
    source = resolve_source(model.source, config_files_only=model.random_weights)
    configure_torch_threads(torch_threads)
    module_name, function_name = _RUNNER_LOADERS[model.modality]
    runner: ModelRunner[Any, Any] = getattr(importlib.import_module(module_name), function_name)(
        model, source
    )
    return runner


def _batch_weight(items: list[tuple[BatchablePayload, float]]) -> int:
    """Ray's batch size counted like the backend's: images for image models, inputs for embeddings."""
    return sum(payload.weight() for payload, _ in items)


class ModelReplica:
    """One replica of an image or embedding model: loads it at start, runs Ray-gathered batches."""

    def __init__(self, model: ModelConfig, torch_threads: int | None) -> None:
        self._model = model
        self._max_batch = model.batching.max_batch_size
        self._runner = _load_runner(model, torch_threads)
        # The decorator's values are placeholders: the sizes are per model, known only here.
        batcher: Any = self._run_batched  # serve.batch's wrapper; its setters are not in its type
        batcher.set_max_batch_size(self._max_batch)
        batcher.set_batch_wait_timeout_s(model.batching.max_wait_ms / 1000.0)
        logger.info("model %s loaded in a Ray Serve replica", model.name)

    async def submit(self, payload: BatchablePayload) -> JobOutcome[Any] | RemoteFailure:
        """Run ``payload`` in the next batch; a request larger than a whole batch runs on its own."""
        item = (payload, time.monotonic())
        if payload.weight() > self._max_batch:
            # serve.batch refuses an item bigger than max_batch_size; the in-process worker runs it alone.
            return (await self._run_items([item]))[0]
        outcome: JobOutcome[Any] | RemoteFailure = await self._run_batched(item)
        return outcome

    @serve.batch(max_batch_size=256, batch_wait_timeout_s=0.0, batch_size_fn=_batch_weight)
    async def _run_batched(
        self, items: list[tuple[BatchablePayload, float]]
    ) -> list[JobOutcome[Any] | RemoteFailure]:
        return await self._run_items(items)

    async def _run_items(
        self, items: list[tuple[BatchablePayload, float]]
    ) -> list[JobOutcome[Any] | RemoteFailure]:
        # Ray gathers any requests; only those with equal keys (image size, steps) share a model call.
        results: dict[int, JobOutcome[Any] | RemoteFailure] = {}
        groups: dict[Hashable, list[int]] = {}
        for index, (payload, _) in enumerate(items):
            groups.setdefault(payload.batch_key(), []).append(index)
        for indices in groups.values():
            group = [items[index] for index in indices]
            for index, outcome in zip(indices, await self._run_group(group), strict=True):
                results[index] = outcome
        return [results[index] for index in range(len(items))]

    async def _run_group(
        self, group: list[tuple[BatchablePayload, float]]
    ) -> list[JobOutcome[Any] | RemoteFailure]:
        started = time.monotonic()
        try:
            # On a thread: the replica's event loop keeps accepting requests for the next batch.
            run = await asyncio.to_thread(self._runner.run_batch, [payload for payload, _ in group])
        except APIError as error:
            return [RemoteFailure.of(error)] * len(group)
        except Exception as error:
            logger.exception("model %s failed on a batch of %d", self._model.name, len(group))
            failure = InferenceFailed(f"model {self._model.name!r} failed: {type(error).__name__}: {error}")
            return [RemoteFailure.of(failure)] * len(group)
        total_weight = sum(payload.weight() for payload, _ in group) or 1
        return [
            JobOutcome(
                result=result,
                device_seconds=run.device_seconds * payload.weight() / total_weight,
                batch_size=total_weight,
                queue_seconds=started - enqueued_at,
            )
            for (payload, enqueued_at), result in zip(group, run.results, strict=True)
        ]


class RemoteModelWorker:
    """Looks like a ``ModelWorker`` to the endpoints, but hands each request to a model deployment."""

    def __init__(self, model: ModelConfig, handle: DeploymentHandle[Any]) -> None:
        self.model = model
        self._handle = handle

    # The deployment only reports healthy once its replicas have loaded the model.
    state = "loaded"
    load_error = ""
    queue_depth = 0

    def start(self) -> None:
        """Nothing to start: Ray Serve runs the replicas."""

    def request_load(self) -> None:
        """Nothing to do: replicas load their model when they start."""

    def stop(self, timeout_s: float = 5.0) -> None:
        """Nothing to stop: Ray Serve drains and stops the replicas."""

    def submit(self, payload: BatchablePayload) -> Job[Any, Any]:
        """Send ``payload`` to the model deployment; the job's future is the call's task."""
        loop = asyncio.get_running_loop()
        return Job(
            payload=payload,
            key=payload.batch_key(),
            weight=payload.weight(),
            enqueued_at=time.monotonic(),
            loop=loop,
            future=loop.create_task(self._call(payload)),
        )

    async def _call(self, payload: BatchablePayload) -> JobOutcome[Any]:
        try:
            reply = await self._handle.submit.remote(payload)
        except BackPressureError:
            raise Overloaded(
                f"model {self.model.name!r} has too many requests queued", retry_after_s=1.0
            ) from None
        except Exception as error:  # a replica died, the cluster lost a node, ...: retryable
            raise ModelUnavailable(
                f"model {self.model.name!r} is unavailable: {type(error).__name__}"
            ) from None
        if isinstance(reply, RemoteFailure):
            raise _ReplayedError(reply)
        outcome: JobOutcome[Any] = reply
        return outcome


@serve.ingress()
class BackendIngress:
    """The backend's Starlette app; image and embedding requests go to their model deployments."""

    def __init__(self, config: BackendConfig, handles: dict[str, DeploymentHandle[Any]]) -> None:
        self._app = build_app(config)
        workers: dict[str, ModelWorker[Any, Any]] = self._app.state.backend.workers
        for name, handle in handles.items():
            model = config.model(name)
            assert model is not None
            # The app's lifespan and endpoints read this same dict, so swapping entries reroutes them.
            workers[name] = cast("ModelWorker[Any, Any]", RemoteModelWorker(model, handle))

    def __serve_build_asgi_app__(self) -> Any:
        return self._app


def deployment_options(
    settings: RayDeploymentConfig | None, *, default_max_ongoing: int, max_queued: int = -1
) -> dict[str, Any]:
    """Ray Serve deployment options for one ``ray:`` section (None: one replica, Ray's resources)."""
    settings = settings or RayDeploymentConfig()
    options: dict[str, Any] = {
        "ray_actor_options": settings.ray_actor_options.model_dump(),
        "max_ongoing_requests": settings.max_ongoing_requests or default_max_ongoing,
        "max_queued_requests": max_queued,
    }
    if settings.autoscaling_config is not None:
        options["autoscaling_config"] = settings.autoscaling_config.model_dump()
    else:
        options["num_replicas"] = settings.num_replicas or 1
    return options


def _deployment_name(index: int, model_name: str) -> str:
    return f"model{index}-{re.sub(r'[^A-Za-z0-9_-]+', '-', model_name)}"


def build_ray_app(config: BackendConfig) -> serve.Application:
    """The Ray Serve application for ``config``: the ingress bound to one deployment per batched model."""
    for model in config.models:
        if model.modality == "chat" and model.ray is not None:
            raise ConfigError(
                f"model {model.name!r}: chat models run inside the ingress on Ray Serve;"
                " size them with ray_ingress instead of ray"
            )
    handles: dict[str, Any] = {}
    counter = itertools.count()
    for model in config.models:
        if model.modality not in _BATCHED_MODALITIES:
            continue
        options = deployment_options(
            model.ray,
            # A full batch gathering while the previous one runs: fewer in flight would cap the batch.
            default_max_ongoing=max(8, 2 * model.batching.max_batch_size),
            max_queued=model.batching.max_queue,
        )
        deployment = serve.deployment(name=_deployment_name(next(counter), model.name), **options)(
            ModelReplica
        )
        handles[model.name] = deployment.bind(model, config.torch_threads)
    ingress = serve.deployment(
        name="ingress", **deployment_options(config.ray_ingress, default_max_ongoing=_INGRESS_MAX_ONGOING)
    )(BackendIngress)
    application: serve.Application = ingress.bind(config, handles)
    return application


APP_NAME = "local-backend"


def serve_on_ray(
    config: BackendConfig, *, host: str, port: int, ray_address: str | None, num_cpus: int | None
) -> int:
    """Deploy ``config`` on Ray Serve, answer HTTP on ``host:port`` until SIGTERM/SIGINT, then tear down.

    Without ``ray_address`` (and without ``RAY_ADDRESS``) a local Ray instance is started and stopped
    with the command; on an existing cluster only this application is deleted at exit.
    """
    import ray

    app = build_ray_app(config)  # refuses a bad ray: section before anything starts
    owns_cluster = ray_address is None and not ray.is_initialized()
    if owns_cluster:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    else:
        ray.init(address=ray_address, include_dashboard=False)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        logger.info("local backend serving on Ray Serve at http://%s:%d", host, port)
        stop.wait()
    finally:
        if owns_cluster:
            serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
        else:
            serve.delete(APP_NAME)
    return 0
