"""What every endpoint shares: reading a bounded JSON body, request ids, tenants, JSON responses."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.auth import authenticate
from gateway.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.policy import Modality
from gateway.serving import Gateway, Request
from providers.errors import redact

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def error_response(
    exc: GatewayError, request_id: str | None = None, secrets: tuple[str, ...] = ()
) -> Response:
    headers = dict(exc.headers)
    if request_id:
        headers["x-request-id"] = request_id
    body = exc.body()
    # Upstream messages are relayed; a vendor that echoes our key in one must not hand it to the caller.
    body["error"]["message"] = redact(body["error"]["message"], secrets)
    return json_response(body, exc.status, headers)


def request_id(http: HttpRequest) -> str:
    rid = http.scope.get("gateway.request_id")
    if rid is None:
        given = http.headers.get("x-request-id")
        # os.urandom is ~5x cheaper than uuid4 and gives the same 32 hex digits.
        rid = given if given and _SAFE_ID.match(given) else "req_" + os.urandom(16).hex()
        http.scope["gateway.request_id"] = rid
    return str(rid)


async def read_json(http: HttpRequest, limit: int) -> dict[str, Any]:
    declared = http.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


_SCHEMA_WORDS = frozenset({"str", "int", "float", "bool", "list[str]", "list[int]", "list[list[int]]"})


def validate(schema: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    """Validate, then write the validated values of the declared top-level fields back into `body`.

    The schemas are strict (no "false" for a bool, no "2" for an int, as OpenAI itself refuses them);
    writing the validated values back keeps what the gateway acts on and what it forwards identical.
    Unknown fields pass through untouched.
    """
    try:
        parsed = schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = [str(p) for p in first["loc"]]
        where = ".".join(p for p in parts if p not in _SCHEMA_WORDS and not p.startswith("function-"))
        raise InvalidRequest(f"{where or 'body'}: {first['msg']}", param=where or None) from None
    declared = parsed.model_fields_set & set(type(parsed).model_fields)
    body.update(parsed.model_dump(include=declared, exclude_unset=True, mode="json"))
    return parsed


async def parse(http: HttpRequest, schema: type[BaseModel], modality: Modality) -> tuple[Gateway, Request]:
    received = time.perf_counter()
    gateway: Gateway = http.app.state.gateway
    rid = request_id(http)
    caller = authenticate(http, http.app.state.keys)
    body = await read_json(http, gateway.store.current.policy.limits.max_body_bytes)
    validate(schema, body)
    return gateway, Request(rid, modality, body, http.headers, caller.tenant, received, caller.key)
