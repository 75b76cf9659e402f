"""One inference thread per model, with dynamic batching and a bounded admission queue.

Requests are submitted from the event loop and wait on an asyncio future; the model runs on the
worker's own thread so the loop keeps serving other requests.  The thread takes the oldest queued job,
then gathers further jobs with the same *batch key* (same shape/steps, say) until the batch holds
``max_batch_size`` units of work or ``max_wait_ms`` have passed since that oldest job arrived, and runs
them as one call.  Jobs with other keys keep their place in the queue for the next round.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from local_backend.config import ModelConfig
from local_backend.errors import APIError, InferenceFailed, ModelUnavailable, Overloaded, ShuttingDown
from local_backend.metrics import BackendMetrics

logger = logging.getLogger(__name__)

PayloadT = TypeVar("PayloadT", bound="BatchablePayload")
ResultT = TypeVar("ResultT")
PayloadT_contra = TypeVar("PayloadT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)
LoadState = Literal["unloaded", "loading", "loaded", "failed"]


class BatchablePayload(Protocol):
    """What the worker needs to know about a request before the model is even loaded."""

    def batch_key(self) -> Hashable:
        """Payloads with equal keys may run in one model call (same size and steps, say)."""
        ...

    def weight(self) -> int:
        """Units of batch capacity the payload uses (images for n>1, inputs for embeddings)."""
        ...


class ModelRunner(Protocol[PayloadT_contra, ResultT_co]):
    """A loaded model that runs a batch of payloads; implemented per modality in ``runners/``."""

    def run_batch(self, payloads: Sequence[PayloadT_contra]) -> BatchRun[ResultT_co]:
        """Run the payloads as one call, one result each in order; raising fails every job in the batch."""
        ...


@dataclass(frozen=True)
class BatchRun(Generic[ResultT_co]):
    """What a runner returns for one call: a result per payload, and the device time the call used."""

    results: Sequence[ResultT_co]
    device_seconds: float


@dataclass(frozen=True)
class JobOutcome(Generic[ResultT]):
    """A finished job: its result and its share of the batch's cost."""

    result: ResultT
    device_seconds: float
    batch_size: int
    queue_seconds: float


@dataclass(eq=False)
class Job(Generic[PayloadT, ResultT]):
    """A queued request; ``cancelled`` is set from the loop when the client went away."""

    payload: PayloadT
    key: Hashable
    weight: int
    enqueued_at: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[JobOutcome[ResultT]]
    cancelled: bool = field(default=False)


def _settle(
    future: asyncio.Future[JobOutcome[ResultT]], outcome: JobOutcome[ResultT] | BaseException
) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class ModelWorker(Generic[PayloadT, ResultT]):
    """Owns one model: loads it (on its own thread), queues requests and runs them in batches."""

    def __init__(
        self,
        model: ModelConfig,
        load_runner: Callable[[], ModelRunner[PayloadT, ResultT]],
        metrics: BackendMetrics,
        *,
        retry_failed_load_after_s: float = 30.0,
        batching: bool = True,
    ) -> None:
        self.model = model
        self._load_runner = load_runner
        self._metrics = metrics
        self._retry_after_failure_s = retry_failed_load_after_s
        self._max_batch = model.batching.max_batch_size if batching else 1
        self._max_wait_s = model.batching.max_wait_ms / 1000.0 if batching else 0.0
        self._max_queue = model.batching.max_queue
        self._condition = threading.Condition()
        self._queue: collections.deque[Job[PayloadT, ResultT]] = collections.deque()
        self._runner: ModelRunner[PayloadT, ResultT] | None = None
        self._state: LoadState = "unloaded"
        self._load_error = ""
        self._failed_at = 0.0
        self._load_requested = False
        self._stopping = False
        self._recent_batch_seconds = 0.5  # a prior for Retry-After until a batch has been timed
        self._thread = threading.Thread(target=self._serve_forever, name=f"model-{model.name}", daemon=True)

    # ----- event-loop side -------------------------------------------------------------------------

    @property
    def state(self) -> LoadState:
        """Whether the model is loaded, loading, failed or not yet asked for."""
        return self._state

    @property
    def load_error(self) -> str:
        """Why the last load failed (empty when it did not)."""
        return self._load_error

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for a batch (the running batch is not counted)."""
        return len(self._queue)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def request_load(self) -> None:
        """Load the model now (in the background) instead of on first use."""
        with self._condition:
            self._load_requested = True
            self._condition.notify()

    def submit(self, payload: PayloadT) -> Job[PayloadT, ResultT]:
        """Queue ``payload``; raises at once when the queue is full, stopping or the model is known broken."""
        loop = asyncio.get_running_loop()
        with self._condition:
            if self._stopping:
                raise ShuttingDown("the local backend is shutting down")
            if self._state == "failed" and time.monotonic() - self._failed_at < self._retry_after_failure_s:
                raise ModelUnavailable(f"model {self.model.name!r} could not be loaded: {self._load_error}")
            if len(self._queue) >= self._max_queue:
                batches_ahead = len(self._queue) / self._max_batch + 1
                raise Overloaded(
                    f"model {self.model.name!r} has {len(self._queue)} requests queued"
                    f" (limit {self._max_queue})",
                    retry_after_s=batches_ahead * self._recent_batch_seconds,
                )
            job: Job[PayloadT, ResultT] = Job(
                payload=payload,
                key=payload.batch_key(),
                weight=payload.weight(),
                enqueued_at=time.monotonic(),
                loop=loop,
                future=loop.create_future(),
            )
            self._queue.append(job)
            self._metrics.queue_depth.labels(self.model.name).set(len(self._queue))
            self._condition.notify()
        return job

    def stop(self, timeout_s: float = 5.0) -> None:
        """Refuse new jobs, fail queued ones and wait (bounded) for the running batch to end."""
        with self._condition:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._condition.notify_all()
        for job in pending:
            self._deliver(job, ShuttingDown("the local backend is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # ----- worker-thread side ----------------------------------------------------------------------

    def _deliver(self, job: Job[PayloadT, ResultT], outcome: JobOutcome[ResultT] | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            job.loop.call_soon_threadsafe(_settle, job.future, outcome)

    def _serve_forever(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and not self._queue and not self._load_requested:
                    self._condition.wait()
                if self._stopping:
                    return
                self._load_requested = False
            if not self._ensure_loaded():
                continue
            batch = self._collect_batch()
            if batch:
                self._run(batch)

    def _ensure_loaded(self) -> bool:
        if self._state == "loaded":
            return True
        if self._state == "failed" and time.monotonic() - self._failed_at < self._retry_after_failure_s:
            self._fail_queued()
            return False
        self._state = "loading"
        started = time.monotonic()
        try:
            self._runner = self._load_runner()
        except Exception as error:
            # Our own ModelUnavailable already reads as a reason; others keep their type for diagnosis.
            reason = str(error) if isinstance(error, ModelUnavailable) else f"{type(error).__name__}: {error}"
            self._load_error = reason.strip()
            self._failed_at = time.monotonic()
            self._state = "failed"
            logger.warning("model %s failed to load: %s", self.model.name, self._load_error)
            self._fail_queued()
            return False
        self._state = "loaded"
        self._metrics.model_loaded.labels(self.model.name).set(1)
        logger.info("model %s loaded in %.1fs", self.model.name, time.monotonic() - started)
        return True

    def _fail_queued(self) -> None:
        with self._condition:
            pending = list(self._queue)
            self._queue.clear()
            self._metrics.queue_depth.labels(self.model.name).set(0)
        error = ModelUnavailable(f"model {self.model.name!r} could not be loaded: {self._load_error}")
        for job in pending:
            self._deliver(job, error)

    def _collect_batch(self) -> list[Job[PayloadT, ResultT]]:
        with self._condition:
            while self._queue and self._queue[0].cancelled:
                self._queue.popleft()
            if not self._queue:
                return []
            first = self._queue.popleft()
            batch, weight = [first], first.weight
            deadline = first.enqueued_at + self._max_wait_s
            while weight < self._max_batch and not self._stopping:
                for job in list(self._queue):
                    if job.key == first.key and not job.cancelled and weight + job.weight <= self._max_batch:
                        self._queue.remove(job)
                        batch.append(job)
                        weight += job.weight
                remaining = deadline - time.monotonic()
                if weight >= self._max_batch or remaining <= 0:
                    break
                self._condition.wait(remaining)
            self._metrics.queue_depth.labels(self.model.name).set(len(self._queue))
            return batch

    def _run(self, batch: list[Job[PayloadT, ResultT]]) -> None:
        assert self._runner is not None
        started = time.monotonic()
        try:
            run = self._runner.run_batch([job.payload for job in batch])
        except APIError as error:
            for job in batch:
                self._deliver(job, error)
            return
        except Exception as error:
            logger.exception("model %s failed on a batch of %d", self.model.name, len(batch))
            failure = InferenceFailed(f"model {self.model.name!r} failed: {type(error).__name__}: {error}")
            for job in batch:
                self._deliver(job, failure)
            return
        self._recent_batch_seconds = 0.8 * self._recent_batch_seconds + 0.2 * (time.monotonic() - started)
        total_weight = sum(job.weight for job in batch) or 1
        self._metrics.batch_size.labels(self.model.name).observe(total_weight)
        self._metrics.device_seconds_total.labels(self.model.name).inc(run.device_seconds)
        for job, result in zip(batch, run.results, strict=True):
            share = run.device_seconds * job.weight / total_weight
            self._metrics.request_device_seconds.labels(self.model.name).observe(share)
            outcome = JobOutcome(
                result=result,
                device_seconds=share,
                batch_size=total_weight,
                queue_seconds=started - job.enqueued_at,
            )
            self._deliver(job, outcome)
