"""One test per fault kind: what fallback does, what the client sees, which headers and metrics show it."""

from __future__ import annotations

import socket

import httpx
import openai
import pytest

from tests.conftest import Harness, HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault

HELLO = [{"role": "user", "content": "hello"}]


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def chat(h: Harness, **headers: str) -> tuple[openai.types.chat.ChatCompletion, httpx.Headers]:
    raw = await h.client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, extra_headers=headers
    )
    return raw.parse(), raw.headers


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.http(500), "transient"),
        (Fault.http(502), "transient"),
        (Fault.http(503), "transient"),
        (Fault.malformed(), "transient"),
        (Fault.html(), "transient"),
        (Fault.reset(), "transient"),
    ],
)
async def test_transient_faults_retry_then_fall_back(
    hybrid: Harness, vendor: FakeOpenAI, fault: Fault, reason: str
) -> None:
    vendor.script("big-model", fault, fault)  # retries: 1 -> two calls on the first deployment
    answer, headers = await chat(hybrid)
    assert answer.choices[0].message.content == "Hello from vendor2/small-model."
    assert headers["x-gateway-deployment"] == "closed-cheap"
    assert headers["x-gateway-attempts"] == "3"
    assert vendor.calls("big-model") == 2
    text = (await hybrid.http.get("/metrics")).text
    assert (
        metric(
            text, "gateway_fallbacks_total", **{"from": "closed-best", "to": "closed-cheap", "reason": reason}
        )
        == 1
    )


async def test_transient_fault_recovers_on_retry_without_fallback(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.http(500))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-best" and headers["x-gateway-attempts"] == "2"


async def test_rate_limit_with_short_retry_after_retries_same_deployment(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.http(429, "rate_limit_exceeded", retry_after="0.05"))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-best" and headers["x-gateway-attempts"] == "2"


async def test_rate_limit_with_long_retry_after_falls_back_at_once(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.http(429, "rate_limit_exceeded", retry_after="30"))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-cheap" and headers["x-gateway-attempts"] == "2"


async def test_all_rate_limited_gives_429_with_retry_after(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    for fake, model in ((vendor, "big-model"), (vendor2, "small-model"), (local, "local-llm")):
        fake.always(model, Fault.http(429, "rate_limit_exceeded", retry_after="30"), times=3)
    with pytest.raises(openai.RateLimitError) as caught:
        await chat(hybrid)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "30"
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


async def test_timeout_falls_back_within_the_attempt_timeout(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(
        vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url, timeout=1.0, retries=0
    )
    vendor.script("big-model", Fault.hang(4))
    async with make_harness(text) as h:
        _, headers = await chat(h)
    assert headers["x-gateway-deployment"] == "closed-cheap"
    rows = await h.ledger_rows()
    assert rows[0]["latency_ms"] < 4000  # one attempt timeout, then the fallback: below the 4 s hang


async def test_connection_refused_falls_back(
    make_harness: HarnessFactory, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # bound, never listening: connection refused
        text = hybrid_policy_text(vendor=dead, vendor2=vendor2.base_url, local=local.base_url)
        async with make_harness(text) as h:
            _, headers = await chat(h)
    assert headers["x-gateway-deployment"] == "closed-cheap"


async def test_retired_model_is_skipped_until_restored(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.http(404, "model_not_found"))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-cheap" and headers["x-gateway-attempts"] == "2"
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-cheap" and headers["x-gateway-attempts"] == "1"
    assert vendor.calls("big-model") == 1  # never retried, never tried again
    states = (await hybrid.http.get("/admin/deployments")).json()
    assert states["deployments"]["closed-best"] == "retired"
    assert (
        'gateway_deployment_state{deployment="closed-best",state="retired"} 1.0'
        in (await hybrid.http.get("/metrics")).text
    )
    restored = await hybrid.http.post("/admin/deployments/closed-best/restore")
    assert restored.json() == {"deployment": "closed-best", "restored": True}
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-best"


async def test_gone_410_also_retires(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.http(410))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-cheap"
    assert hybrid.gateway.breakers.state("closed-best") == "retired"


async def test_refused_key_falls_back_and_trips_the_provider(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.http(401, "invalid_api_key"))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-cheap" and headers["x-gateway-attempts"] == "2"
    assert hybrid.gateway.breakers.state("closed-embed") == "open"  # same provider, tripped too
    _, headers = await chat(hybrid)
    assert vendor.calls("big-model") == 1


async def test_bad_request_is_not_retried_anywhere(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.http(400, "invalid_value"))
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(hybrid)
    assert caught.value.status_code == 400
    assert vendor.calls() == 1 and vendor2.calls() == 0
    assert set(caught.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


async def test_content_policy_stops_by_default(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.http(400, "content_policy_violation"))
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(hybrid)
    assert caught.value.body["code"] == "content_policy_violation"  # type: ignore[index]
    assert vendor2.calls() == 0


async def test_context_too_long_goes_to_a_larger_context(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.http(400, "context_length_exceeded"))
    _, headers = await chat(hybrid)
    assert headers["x-gateway-deployment"] == "closed-cheap" and headers["x-gateway-attempts"] == "2"


async def test_context_too_long_skips_smaller_contexts(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.http(400, "context_length_exceeded"))
    vendor2.script("small-model", Fault.http(400, "context_length_exceeded"))
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(hybrid)
    # best (8k) failed -> cheap (128k) tried -> local (32k) is not larger than 128k, so never called
    assert caught.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert local.calls() == 0


async def test_everything_failing_ends_in_one_openai_shaped_error(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    for fake, model in ((vendor, "big-model"), (vendor2, "small-model"), (local, "local-llm")):
        fake.always(model, Fault.http(500), times=2)
    resp = await hybrid.http.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO})
    assert resp.status_code == 502
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.headers["x-request-id"]
    rows = await hybrid.ledger_rows()
    assert rows[-1]["status"] == 502 and rows[-1]["attempts"] == 6


async def test_breaker_opens_and_later_requests_skip_at_once(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(
        vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url, retries=0, min_requests=3
    )
    vendor.always("big-model", Fault.http(500), times=3)
    async with make_harness(text) as h:
        for _ in range(3):
            _, headers = await chat(h)
            assert headers["x-gateway-deployment"] == "closed-cheap"
        assert h.gateway.breakers.state("closed-best") == "open"
        _, headers = await chat(h)
        assert headers["x-gateway-attempts"] == "1"
        assert vendor.calls("big-model") == 3


async def test_stream_falls_back_unseen_before_the_first_chunk(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.http(500), Fault.cut_stream(after_chunks=0))
    stream = await hybrid.client.chat.completions.create(model="chat", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from vendor2/small-model."


async def test_stream_cut_after_first_chunk_ends_with_error_event_not_done(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.cut_stream(after_chunks=2))
    async with hybrid.http.stream(
        "POST", "/v1/chat/completions", json={"model": "chat", "messages": HELLO, "stream": True}
    ) as resp:
        body = (await resp.aread()).decode()
    assert '"content":"Hello"' in body
    assert '"code":"stream_interrupted"' in body
    assert "[DONE]" not in body
    rows = await hybrid.ledger_rows()
    assert rows[0]["status"] == 502 and rows[0]["completion_tokens"] > 0 and rows[0]["cost_usd"] > 0
    # The official client turns the error event into an exception: a cut answer never looks complete.
    vendor.script("big-model", Fault.cut_stream(after_chunks=2))
    stream = await hybrid.client.chat.completions.create(model="chat", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="stream broke"):
        async for _ in stream:
            pass
