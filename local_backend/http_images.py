"""POST /v1/images/generations."""

from __future__ import annotations

import base64
import secrets
import time

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
from local_backend.jobs import ImagePayload, ImageResult
from local_backend.schemas import ImageGenerationRequest, parse_request


@openai_endpoint("images")
async def create_images(request: Request) -> Response:
    """Generate ``n`` PNG images; the response carries the seed used (``seed``, header ``x-seed``)."""
    body = parse_request(ImageGenerationRequest, await read_json(request))
    model, worker = lookup_model(request, body.model, "image")
    limits = model.image
    width, height = body.dimensions() or (limits.width, limits.height)
    if width % 8 or height % 8 or not min(width, height) >= 8 or max(width, height) > limits.max_side:
        raise InvalidRequest(
            f"size must be WxH with multiples of 8 between 8 and {limits.max_side}", param="size"
        )
    if body.n > limits.max_n:
        raise InvalidRequest(f"n must be at most {limits.max_n} for {model.name!r}", param="n")
    steps = body.num_inference_steps or limits.num_inference_steps
    if steps > limits.max_steps:
        raise InvalidRequest(
            f"num_inference_steps must be at most {limits.max_steps}", param="num_inference_steps"
        )
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    payload = ImagePayload(
        prompt=body.prompt,
        n=body.n,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=body.guidance_scale if body.guidance_scale is not None else limits.guidance_scale,
        seed=seed,
    )
    outcome = await wait_for_job(worker.submit(payload))
    result: ImageResult = outcome.result
    backend_of(request).metrics.images_total.labels(model.name).inc(len(result.png_images))
    data = [
        {"b64_json": base64.b64encode(png).decode("ascii"), "seed": seed + index}
        for index, png in enumerate(result.png_images)
    ]
    response = {
        "created": int(time.time()),
        "data": data,
        "seed": seed,
        "size": f"{width}x{height}",
        "output_format": "png",
        "usage": {"images": len(data), "device_seconds": outcome.device_seconds},
    }
    return json_response(response, headers={**cost_headers(outcome), "x-seed": str(seed)})
