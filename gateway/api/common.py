"""What every endpoint shares: reading a bounded JSON body, request ids, tenants, JSON responses."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from gateway.auth import authenticate, header_dict
from gateway.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.policy import Modality
from gateway.serving import Gateway, Request
from providers.errors import redact

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class JSONResponse(Response):
    """A Starlette Response for a JSON body and headers the gateway wrote itself (latin-1).

    Skips Starlette's generic header normalisation, which showed in the profile on every answer.
    """

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = orjson.dumps(content)
        raw = [(b"content-length", str(len(self.body)).encode()), (b"content-type", b"application/json")]
        if headers:
            raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        self.raw_headers = raw


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status, headers)


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


def _new_id() -> str:
    # os.urandom is ~5x cheaper than uuid4 and gives the same 32 hex digits.
    return "req_" + os.urandom(16).hex()


def request_id(http: HttpRequest) -> str:
    rid = http.scope.get("gateway.request_id")
    if rid is None:
        given = header_dict(http).get("x-request-id")
        rid = given if given and _SAFE_ID.match(given) else _new_id()
        http.scope["gateway.request_id"] = rid
    return str(rid)


async def read_json(http: HttpRequest, limit: int) -> dict[str, Any]:
    declared = header_dict(http).get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:  # the ASGI messages themselves: Request.stream()'s async generator showed in the profile
        message = await http.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        body = orjson.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


_SCHEMA_WORDS = frozenset({"str", "int", "float", "bool", "list[str]", "list[int]", "list[list[int]]"})


def validate(schema: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    """Validate the body against the endpoint's schema; unknown fields pass through untouched.

    The schemas are strict (no "false" for a bool, no "2" for an int, as OpenAI itself refuses them), so a
    body that passes holds exactly the values the gateway acts on: it is forwarded as it came, with no
    re-serialisation of the validated model (which cost ~4% of the event loop under load).
    """
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = [str(p) for p in first["loc"]]
        where = ".".join(p for p in parts if p not in _SCHEMA_WORDS and not p.startswith("function-"))
        raise InvalidRequest(f"{where or 'body'}: {first['msg']}", param=where or None) from None


async def parse(
    http: HttpRequest,
    schema: type[BaseModel],
    modality: Modality,
    translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[Gateway, Request]:
    """Authenticate, read and validate the body; `translate` turns another API's body into the one the
    service speaks for `modality` (the caller's own body is then kept in `Request.source`)."""
    received = time.perf_counter()
    gateway: Gateway = http.app.state.gateway
    rid = request_id(http)
    caller = authenticate(http, http.app.state.keys)
    body = await read_json(http, gateway.store.current.policy.limits.max_body_bytes)
    validate(schema, body)
    source = None
    if translate is not None:
        source, body = body, translate(body)
    # A caller may send the same x-request-id twice; each request still gets its own ledger row.
    headers = header_dict(http)
    row_id = rid if rid.startswith("req_") and headers.get("x-request-id") != rid else _new_id()
    return gateway, Request(rid, modality, body, headers, caller.tenant, received, caller.key, row_id, source)
