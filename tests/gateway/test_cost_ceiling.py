"""A cost ceiling (x-max-cost-usd, or a rule's max_cost_usd) holds for the answer, not only the estimate:
each attempt's output is capped at what the ceiling affords on that deployment."""

from __future__ import annotations

import pytest

from gateway.policy_loader import parse_policy
from gateway.routing import RoutingPlan
from gateway.serving import within_ceiling
from tests.conftest import Harness, HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault

HELLO = [{"role": "user", "content": "hello"}]
PROMPT_TOKENS = len("hello") // 3 + 8  # the gateway's conservative prompt estimate


def affordable(ceiling: float, input_per_mtok: float, output_per_mtok: float) -> int:
    return int((ceiling - PROMPT_TOKENS * input_per_mtok / 1e6) * 1e6 / output_per_mtok)


async def test_a_request_ceiling_caps_the_output_the_upstream_may_write(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI
) -> None:
    ceiling = {
        "x-max-cost-usd": "0.001"
    }  # closed-best's 1,024-token estimate is above it: closed-cheap serves
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, extra_headers=ceiling
    )
    assert raw.headers["x-gateway-deployment"] == "closed-cheap"
    cap = affordable(0.001, 0.15, 0.6)
    assert cap == 1664 and vendor2.received[-1].body["max_tokens"] == cap
    assert float(raw.headers["x-gateway-cost-usd"]) <= 0.001

    stream = await hybrid.client.chat.completions.create(
        model="chat", messages=HELLO, stream=True, extra_headers=ceiling
    )
    assert [c async for c in stream]
    assert vendor2.received[-1].body["max_tokens"] == cap

    # 50 tokens fit closed-best under the ceiling (it affords 64 there): the caller's own limit stands.
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, max_tokens=50, extra_headers=ceiling
    )
    assert raw.headers["x-gateway-deployment"] == "closed-best"
    assert affordable(0.001, 3.0, 15.0) == 64 and vendor.received[-1].body["max_tokens"] == 50

    await hybrid.client.chat.completions.create(model="chat", messages=HELLO)
    assert "max_tokens" not in vendor.received[-1].body  # no ceiling, no cap


async def test_each_fallback_attempt_gets_its_own_deployments_cap(
    hybrid: Harness, vendor: FakeOpenAI, vendor2: FakeOpenAI
) -> None:
    vendor2.always("small-model", Fault.http(503), times=10)
    rule_ceiling = {"x-tenant": "free"}  # free-tier-cap: require max_cost_usd 0.002, prefer cheapest
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, extra_headers=rule_ceiling
    )
    assert vendor2.received[-1].body["max_tokens"] == affordable(0.002, 0.15, 0.6)
    # closed-best is above the ceiling; the local deployment is priced by device time, not per token.
    assert raw.headers["x-gateway-deployment"] == "open-local"
    explained = await hybrid.http.post(
        "/admin/explain", json={"request": {"model": "chat", "messages": HELLO}, "headers": rule_ceiling}
    )
    assert explained.json()["output_token_caps"] == {"closed-cheap": affordable(0.002, 0.15, 0.6)}


POLICY = """
version: 1
providers:
  oa: {kind: openai, api_key_env: OPENAI_KEY_FOR_TEST}
  compat: {kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
deployments:
  reasoning: {provider: oa, model: o4-mini, modality: chat, openness: closed, data: {location: vendor},
              price: {input_per_mtok: 1.0, output_per_mtok: 4.0}}
  compat-llm: {provider: compat, model: m, modality: chat, openness: open, data: {location: local},
               price: {input_per_mtok: 1.0, output_per_mtok: 4.0}}
routes:
  chat: {candidates: [reasoning, compat-llm]}
"""


@pytest.mark.parametrize(
    ("deployment", "body", "expected"),
    [
        ("reasoning", {"messages": HELLO}, {"max_completion_tokens": 1000}),
        ("reasoning", {"messages": HELLO, "max_tokens": 5000}, {"max_completion_tokens": 1000}),
        ("compat-llm", {"messages": HELLO, "max_tokens": 5000}, {"max_tokens": 1000}),
        ("compat-llm", {"messages": HELLO, "max_completion_tokens": 5000}, {"max_completion_tokens": 1000}),
        ("compat-llm", {"messages": HELLO, "max_tokens": 10}, {"max_tokens": 10}),
        ("compat-llm", {"messages": HELLO, "n": 3}, {"max_tokens": 333}),
    ],
)
def test_the_cap_uses_the_parameter_the_upstream_accepts(
    deployment: str, body: dict[str, object], expected: dict[str, int]
) -> None:
    policy = parse_policy(POLICY, "ceiling.yaml")
    plan = RoutingPlan(route="chat", order=[], output_caps={deployment: 1000})
    sent = within_ceiling(body, policy.deployments[deployment], plan, policy)
    limits = {k: v for k, v in sent.items() if k in ("max_tokens", "max_completion_tokens")}
    assert limits == expected
    assert within_ceiling(body, policy.deployments[deployment], RoutingPlan("chat", []), policy) is body


async def test_a_budget_reservation_caps_the_answer_at_what_was_set_aside(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    budgets = "tenants:\n  acme: {budget: {daily_usd: 5}}\nlimits: {default_output_tokens: %d}\n"
    acme = {"x-tenant": "acme"}
    for default in (1024, 4096):
        async with make_harness(text + budgets % default) as h:
            # The reservation is closed-best's estimate, the dearest candidate: exactly the assumed output.
            await h.client.chat.completions.create(model="chat", messages=HELLO, extra_headers=acme)
            assert vendor.received[-1].body["max_tokens"] == default

            await h.client.chat.completions.create(model="chat", messages=HELLO)  # no budget, no cap
            assert "max_tokens" not in vendor.received[-1].body

            vendor.always("big-model", Fault.http(503), times=4)  # the fallback gets its own, larger cap
            await h.client.chat.completions.create(model="chat", messages=HELLO, extra_headers=acme)
            reserved = PROMPT_TOKENS * 3.0 / 1e6 + default * 15.0 / 1e6
            assert vendor2.received[-1].body["max_tokens"] == affordable(reserved, 0.15, 0.6)
            vendor.clear()
