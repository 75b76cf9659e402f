"""The chat endpoint through the official openai client: plain, streamed, tools, headers, ledger."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Harness, HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI


async def test_plain_chat_goes_to_best_quality_and_carries_decision_headers(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hello"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello from vendor/big-model."
    assert raw.headers["x-gateway-route"] == "chat"
    assert raw.headers["x-gateway-deployment"] == "closed-best"
    assert raw.headers["x-gateway-provider"] == "vendor"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert raw.headers["x-request-id"].startswith("req_")
    # 11 prompt tokens at $3/M + 5 completion tokens at $15/M
    assert float(raw.headers["x-gateway-cost-usd"]) == pytest.approx(11 * 3e-6 + 5 * 15e-6)
    assert vendor.received[0].body["model"] == "big-model"
    assert vendor.received[0].headers["Authorization"] == "Bearer sk-vendor-SECRET-1234567890"
    rows = await hybrid.ledger_rows()
    assert len(rows) == 1
    assert rows[0]["deployment"] == "closed-best" and rows[0]["status"] == 200
    assert rows[0]["prompt_tokens"] == 11 and rows[0]["completion_tokens"] == 5
    assert rows[0]["cost_usd"] == pytest.approx(11 * 3e-6 + 5 * 15e-6)


async def test_client_request_id_is_kept(hybrid: Harness) -> None:
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "trace-42"}
    )
    assert raw.headers["x-request-id"] == "trace-42"


async def test_stream_with_usage_through_openai_client(hybrid: Harness) -> None:
    stream = await hybrid.client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello from vendor/big-model."
    assert usage is not None and usage.completion_tokens == 5
    rows = await hybrid.ledger_rows()
    assert rows[0]["stream"] == 1 and rows[0]["completion_tokens"] == 5 and rows[0]["cost_usd"] > 0


async def test_stream_without_include_usage_hides_usage_but_still_counts_it(hybrid: Harness) -> None:
    async with hybrid.http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ) as resp:
        body = (await resp.aread()).decode()
        assert resp.headers["x-gateway-deployment"] == "closed-best"
        assert resp.headers["x-gateway-cost-basis"] == "estimate"
    assert '"usage"' not in body
    assert body.rstrip().endswith("data: [DONE]")
    assert ": x-gateway-cost-usd=" in body
    rows = await hybrid.ledger_rows()
    assert rows[0]["completion_tokens"] == 5 and rows[0]["cost_estimated"] == 0


async def test_tools_and_tool_calls_pass_through(hybrid: Harness, vendor: FakeOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    answer = await hybrid.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "weather?"}], tools=tools, tool_choice="auto"
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and call.function.arguments == '{"city": "Paris"}'
    assert vendor.received[0].body["tools"] == tools and vendor.received[0].body["tool_choice"] == "auto"


async def test_models_lists_routes(hybrid: Harness) -> None:
    models = await hybrid.client.models.list()
    assert sorted(m.id for m in models.data) == ["chat", "embedding", "image"]
    model = await hybrid.client.models.retrieve("chat")
    assert model.id == "chat" and model.object == "model" and model.owned_by == "hybrid-gateway"
    with pytest.raises(openai.NotFoundError) as missing:
        await hybrid.client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"


async def test_a_tenant_limited_to_some_routes_sees_only_those(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    async with make_harness(text + "tenants:\n  imagers: {routes: [image]}\n") as h:
        imagers = {"x-tenant": "imagers"}
        models = await h.client.models.list(extra_headers=imagers)
        assert [m.id for m in models.data] == ["image"]
        with pytest.raises(openai.NotFoundError):
            await h.client.models.retrieve("chat", extra_headers=imagers)
        assert (await h.client.models.retrieve("chat")).id == "chat"  # other tenants still see it
