"""Wire schemas of the OpenAI endpoints the gateway serves (validation and the OpenAPI document).

Only what the gateway must understand is declared; every other field (tools, response_format, logprobs,
vendor extensions) is accepted and passed through untouched, so new OpenAI features keep working.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    # strict: a JSON string is never silently read as a bool or a number.
    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    temperature: float | None = Field(None, ge=0, le=2)
    tools: list[dict[str, Any]] | None = None


class ResponsesRequest(_Open):
    """POST /v1/responses, served by chat routes (gateway/responses.py says what is translated)."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None


class ImageGenerationRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    prompt: str = Field(min_length=1, max_length=32_000)
    n: int = Field(1, ge=1, le=10)
    size: str = Field("1024x1024", pattern=r"^(auto|\d{2,5}x\d{2,5})$")
    response_format: Literal["url", "b64_json"] | None = None
    seed: int | None = None
    quality: str | None = None


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "hybrid-gateway"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
