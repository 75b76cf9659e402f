"""POST /v1/embeddings."""

from __future__ import annotations

import base64

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from local_backend.errors import InvalidRequest
from local_backend.http_common import (
    backend_of,
    cost_headers,
    json_response,
    lookup_model,
    openai_endpoint,
    read_json,
    wait_for_job,
)
from local_backend.jobs import EmbeddingPayload, EmbeddingResult
from local_backend.schemas import EmbeddingRequest, parse_request


@openai_endpoint("embeddings")
async def create_embeddings(request: Request) -> Response:
    """Embed each input; ``encoding_format`` float gives lists, base64 gives little-endian float32 bytes."""
    body = parse_request(EmbeddingRequest, await read_json(request))
    model, worker = lookup_model(request, body.model, "embedding")
    inputs = body.inputs()
    if any(not text for text in inputs):
        raise InvalidRequest("input strings must not be empty", param="input")
    if len(inputs) > model.batching.max_batch_size * 16:
        raise InvalidRequest(
            f"at most {model.batching.max_batch_size * 16} inputs per request", param="input"
        )
    outcome = await wait_for_job(worker.submit(EmbeddingPayload(inputs=inputs)))
    result: EmbeddingResult = outcome.result
    if body.dimensions is not None and body.dimensions != result.vectors.shape[1]:
        raise InvalidRequest(
            f"{model.name!r} produces {result.vectors.shape[1]} dimensions; it cannot change that",
            param="dimensions",
        )
    data = []
    for index, row in enumerate(result.vectors):
        embedding: object
        if body.encoding_format == "base64":
            embedding = base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
        else:
            embedding = np.asarray(row, dtype=np.float64).tolist()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    backend_of(request).metrics.tokens_total.labels(model.name, "prompt").inc(result.prompt_tokens)
    usage = {
        "prompt_tokens": result.prompt_tokens,
        "total_tokens": result.prompt_tokens,
        "device_seconds": outcome.device_seconds,
    }
    response = {"object": "list", "data": data, "model": model.name, "usage": usage}
    return json_response(response, headers=cost_headers(outcome))
