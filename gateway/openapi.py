"""The OpenAPI document of the endpoints the gateway really serves, built from the wire schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.protocol import (
    ChatCompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
    ImageGenerationRequest,
    ModelCard,
    ModelList,
    ResponsesRequest,
)

_ERRORS = {
    str(code): {
        "description": why,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for code, why in [
        (400, "invalid request"),
        (401, "missing or wrong key"),
        (403, "refused by policy"),
        (404, "unknown route"),
        (413, "body too large"),
        (429, "rate limited"),
        (502, "upstream failed"),
        (503, "no deployment available"),
        (504, "upstream timed out"),
    ]
}
_GATEWAY_HEADERS = {
    h: {"schema": {"type": "string"}, "description": d}
    for h, d in [
        ("x-request-id", "the request's id (the caller's, when it sent a safe one)"),
        ("x-gateway-route", "the route that served the request"),
        ("x-gateway-deployment", "the deployment that answered"),
        ("x-gateway-provider", "its provider"),
        ("x-gateway-attempts", "upstream calls made, retries and fallbacks included"),
        ("x-gateway-cost-usd", "cost in USD (for streams: the estimate; the final cost ends the stream)"),
    ]
}
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


def _post(summary: str, schema: type[BaseModel], media: str = "application/json") -> dict[str, Any]:
    ok: dict[str, Any] = {
        "description": "answer",
        "headers": _GATEWAY_HEADERS,
        "content": {media: {"schema": _ANY_OBJECT}},
    }
    if media == "application/json":
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}
                },
            },
            "responses": {"200": ok, **_ERRORS},
        }
    }


def _get(
    summary: str,
    schema: dict[str, Any],
    media: str = "application/json",
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "answer", "content": {media: {"schema": schema}}}},
    }
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (m, "validation")
            for m in (
                ChatCompletionRequest,
                ResponsesRequest,
                ImageGenerationRequest,
                EmbeddingRequest,
                ErrorResponse,
                ModelCard,
                ModelList,
            )
        ],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hybrid-gateway",
            "version": "0.1.0",
            "description": "OpenAI-compatible gateway routing between closed APIs and local open weights.",
        },
        "paths": {
            "/v1/chat/completions": _post("Chat completion, plain or streamed (SSE)", ChatCompletionRequest),
            "/v1/responses": _post(
                "Responses API on a chat route, plain or streamed (typed SSE events)", ResponsesRequest
            ),
            "/v1/images/generations": _post("Generate images", ImageGenerationRequest),
            "/v1/embeddings": _post("Embed text", EmbeddingRequest),
            "/v1/models": _get(
                "Routes a caller may name as model", {"$ref": "#/components/schemas/ModelList"}
            ),
            "/v1/models/{model}": _get(
                "One route a caller may name as model (404 model_not_found otherwise)",
                {"$ref": "#/components/schemas/ModelCard"},
                parameters=[{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            ),
            "/healthz": _get("Liveness", _ANY_OBJECT),
            "/readyz": _get("Readiness: every route has a usable deployment", _ANY_OBJECT),
            "/metrics": _get("Prometheus metrics", {"type": "string"}, "text/plain"),
        },
        "components": {"schemas": defs.get("$defs", {})},
    }
