"""POST /v1/chat/completions, plain and streamed as server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from local_backend.config import ModelConfig
from local_backend.errors import APIError, InvalidRequest
from local_backend.http_common import (
    backend_of,
    cost_headers,
    json_response,
    lookup_model,
    openai_endpoint,
    read_json,
    wait_for_job,
)
from local_backend.jobs import ChatPayload, ChatResult
from local_backend.metrics import BackendMetrics
from local_backend.schemas import ChatCompletionRequest, parse_request
from local_backend.worker import Job, JobOutcome, ModelWorker

_STARTED = object()  # generation began: the model loaded and the request left the queue
_FINISHED = object()  # the job's future is settled (result or error)


def _usage(result: ChatResult, device_seconds: float) -> dict[str, Any]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "device_seconds": device_seconds,
    }


def _count_tokens(metrics: BackendMetrics, model: ModelConfig, result: ChatResult) -> None:
    metrics.tokens_total.labels(model.name, "prompt").inc(result.prompt_tokens)
    metrics.tokens_total.labels(model.name, "completion").inc(result.completion_tokens)


def _payload_from(body: ChatCompletionRequest, model: ModelConfig) -> ChatPayload:
    limits = model.chat
    max_tokens = body.max_completion_tokens or body.max_tokens or limits.max_tokens
    if max_tokens > limits.max_tokens_limit:
        raise InvalidRequest(f"max_tokens must be at most {limits.max_tokens_limit}", param="max_tokens")
    # "developer" is OpenAI's newer name for the system role; open models' templates know "system".
    messages = [
        {"role": "system" if message.role == "developer" else message.role, "content": message.text()}
        for message in body.messages
    ]
    return ChatPayload(
        messages=messages,
        max_tokens=max_tokens,
        temperature=body.temperature if body.temperature is not None else limits.temperature,
        top_p=body.top_p if body.top_p is not None else 1.0,
        seed=body.seed,
        stop=body.stop_list(),
    )


@openai_endpoint("chat")
async def create_chat_completion(request: Request) -> Response:
    """Generate one assistant message; ``stream: true`` sends it as ``chat.completion.chunk`` events."""
    body = parse_request(ChatCompletionRequest, await read_json(request))
    model, worker = lookup_model(request, body.model, "chat")
    payload = _payload_from(body, model)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return await _start_stream(request, model, worker, payload, include_usage=include_usage)
    outcome = await wait_for_job(worker.submit(payload))
    result: ChatResult = outcome.result
    _count_tokens(backend_of(request).metrics, model, result)
    response = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.name,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": _usage(result, outcome.device_seconds),
    }
    return json_response(response, headers=cost_headers(outcome))


def _sse(data: object) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def _start_stream(
    request: Request,
    model: ModelConfig,
    worker: ModelWorker[Any, Any],
    payload: ChatPayload,
    *,
    include_usage: bool,
) -> Response:
    """Queue the job and wait until generation starts, so load and queue errors keep their HTTP status."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[object] = asyncio.Queue()

    def from_worker(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
            loop.call_soon_threadsafe(events.put_nowait, item)

    payload.on_start = lambda: from_worker(_STARTED)
    payload.on_delta = from_worker
    job: Job[ChatPayload, ChatResult] = worker.submit(payload)
    job.future.add_done_callback(lambda _: events.put_nowait(_FINISHED))
    try:
        first = await events.get()
    except asyncio.CancelledError:
        payload.cancelled.set()
        job.cancelled = True
        raise
    if first is _FINISHED:
        job.future.result()  # raises the job's APIError, answered with its own status
    metrics = backend_of(request).metrics
    return StreamingResponse(
        _stream_chunks(job, events, model, metrics, include_usage=include_usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _stream_chunks(
    job: Job[ChatPayload, ChatResult],
    events: asyncio.Queue[object],
    model: ModelConfig,
    metrics: BackendMetrics,
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model.name,
                "system_fingerprint": None,
                "choices": [choice],
            }
        )

    try:
        yield chunk({"role": "assistant", "content": ""})
        while (item := await events.get()) is not _FINISHED:
            if isinstance(item, str):
                yield chunk({"content": item})
        error = job.future.exception()
        if error is not None:
            failure = error if isinstance(error, APIError) else APIError(str(error))
            yield _sse(failure.body())
            yield b"data: [DONE]\n\n"
            return
        outcome: JobOutcome[ChatResult] = job.future.result()
        _count_tokens(metrics, model, outcome.result)
        yield chunk({}, outcome.result.finish_reason)
        if include_usage:
            usage_chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model.name,
                "system_fingerprint": None,
                "choices": [],
                "usage": _usage(outcome.result, outcome.device_seconds),
            }
            yield _sse(usage_chunk)
        yield b"data: [DONE]\n\n"
    finally:
        if not job.future.done():  # the client disconnected mid-stream: stop generating for it
            job.payload.cancelled.set()
            job.cancelled = True
