"""Bad input gets a clear OpenAI-shaped error, and changes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import Harness
from tests.fakes.openai_upstream import FakeOpenAI

SHAPE = {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_request", None),
        (b"[1, 2]", 400, "invalid_request", None),
        (b'{"model": "chat"}', 400, "invalid_request", "messages"),
        (b'{"model": "chat", "messages": []}', 400, "invalid_request", "messages"),
        (
            b'{"model": "chat", "messages": [{"role": "robot", "content": "x"}]}',
            400,
            "invalid_request",
            "messages.0.role",
        ),
        (
            b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            400,
            "invalid_request",
            "temperature",
        ),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
            "model",
        ),
        (
            b'{"model": "image", "messages": [{"role": "user", "content": "x"}]}',
            400,
            "wrong_modality",
            "model",
        ),
    ],
)
async def test_bad_chat_bodies(
    hybrid: Harness, vendor: FakeOpenAI, body: bytes, status: int, code: str, param: str | None
) -> None:
    resp = await hybrid.http.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == SHAPE and error["code"] == code and error["param"] == param
    assert resp.headers["x-request-id"]
    assert vendor.calls() == 0


@pytest.mark.parametrize(
    ("header", "value", "param"),
    [
        ("x-data-classification", "secret", "x-data-classification"),
        ("x-max-cost-usd", "-1", "x-max-cost-usd"),
        ("x-max-cost-usd", "abc", "x-max-cost-usd"),
        ("x-quality", "101", "x-quality"),
        ("x-tenant", "Bad Tenant!", "x-tenant"),
    ],
)
async def test_bad_signal_headers(hybrid: Harness, header: str, value: str, param: str) -> None:
    resp = await hybrid.http.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        headers={header: value},
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param


async def test_oversized_body_is_413(hybrid: Harness, vendor: FakeOpenAI) -> None:
    big = "x" * (5 * 1024 * 1024)
    resp = await hybrid.http.post(
        "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": big}]}
    )
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"
    assert vendor.calls() == 0


async def test_unknown_path_and_method(hybrid: Harness) -> None:
    resp = await hybrid.http.get("/v1/nothing")
    assert resp.status_code == 404 and set(resp.json()["error"]) == SHAPE
    resp = await hybrid.http.get("/v1/chat/completions")
    assert resp.status_code == 405 and set(resp.json()["error"]) == SHAPE


async def test_bad_requests_are_in_the_ledger_without_cost(hybrid: Harness) -> None:
    await hybrid.http.post(
        "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    rows = await hybrid.ledger_rows()
    assert rows[0]["status"] == 404 and rows[0]["cost_usd"] == 0
    metrics = (await hybrid.http.get("/metrics")).text
    assert 'route="_unknown"' in metrics and 'route="nope"' not in metrics


async def test_openapi_describes_the_real_endpoints(hybrid: Harness) -> None:
    doc = (await hybrid.http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path, method in [
        ("/v1/chat/completions", "post"),
        ("/v1/images/generations", "post"),
        ("/v1/embeddings", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{model}", "get"),
        ("/v1/responses", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]:
        assert method in doc["paths"][path]
        served = await hybrid.http.request(method.upper(), path.replace("{model}", "chat"), json={})
        assert served.status_code != 404 and served.status_code != 405
    assert "ChatCompletionRequest" in doc["components"]["schemas"]
