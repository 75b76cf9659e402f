"""Images and embeddings through the official openai client."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Harness
from tests.fakes.openai_upstream import PNG_1X1, FakeOpenAI, Fault


async def test_images_b64_with_n_size_seed(hybrid: Harness, vendor: FakeOpenAI) -> None:
    raw = await hybrid.client.images.with_raw_response.generate(
        model="image",
        prompt="a lighthouse",
        n=2,
        size="1024x1024",
        response_format="b64_json",
        extra_body={"seed": 7},
    )
    result = raw.parse()
    assert len(result.data) == 2 and base64.b64decode(result.data[0].b64_json or "") == PNG_1X1
    sent = vendor.received[0].body
    assert (
        sent["model"] == "image-pro" and sent["n"] == 2 and sent["size"] == "1024x1024" and sent["seed"] == 7
    )
    assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(0.08)
    rows = await hybrid.ledger_rows()
    assert rows[0]["images"] == 2 and rows[0]["cost_usd"] == pytest.approx(0.08)


async def test_images_url_when_upstream_returns_base64(hybrid: Harness) -> None:
    result = await hybrid.client.images.generate(model="image", prompt="a lighthouse", response_format="url")
    assert (result.data[0].url or "").startswith("data:image/png;base64,")


async def test_image_fallback_to_local_is_charged_by_device_time(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("image-pro", Fault.http(503), Fault.http(503))
    raw = await hybrid.client.images.with_raw_response.generate(model="image", prompt="a lighthouse")
    assert raw.headers["x-gateway-deployment"] == "local-image"
    assert float(raw.headers["x-gateway-cost-usd"]) > 0  # no device_seconds reported: wall time is charged
    rows = await hybrid.ledger_rows()
    assert rows[0]["cost_estimated"] == 1 and rows[0]["device_seconds"] > 0


async def test_embeddings(hybrid: Harness) -> None:
    raw = await hybrid.client.embeddings.with_raw_response.create(model="embedding", input=["a", "b"])
    result = raw.parse()
    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert raw.headers["x-gateway-deployment"] == "closed-embed"


async def test_pii_rules_are_per_route(hybrid: Harness) -> None:
    # The embedding route has no PII rule and this policy sets no policy-wide PII floor: PII may go closed.
    raw = await hybrid.client.embeddings.with_raw_response.create(
        model="embedding", input="mail jane.doe@example.com"
    )
    assert raw.headers["x-gateway-deployment"] == "closed-embed"


async def test_healthz_readyz_metrics(hybrid: Harness) -> None:
    assert (await hybrid.http.get("/healthz")).json() == {"status": "ok"}
    ready = await hybrid.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["routes"] == {
        "chat": True,
        "image": True,
        "embedding": True,
    }
    await hybrid.client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    text = (await hybrid.http.get("/metrics")).text
    for name in [
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_cost_usd_total",
        "gateway_tokens_total",
        "gateway_deployment_state",
    ]:
        assert name in text, name
    assert (
        'gateway_tokens_total{deployment="closed-best",provider="vendor",route="chat",tenant="default",type="prompt"} 11.0'
        in text
    )
