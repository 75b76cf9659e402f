"""The pure routing engine, through the app's explain endpoint and the requests the fakes receive."""

from __future__ import annotations

import datetime as dt

import openai
import pytest

from gateway.policy import Classification, Modality
from gateway.policy_loader import parse_policy
from gateway.routing import plan_route
from gateway.signals import Signals, UsageEstimate
from tests.conftest import Harness, HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault

HELLO = [{"role": "user", "content": "hello"}]


async def explain(h: Harness, request: dict[str, object], **headers: str) -> dict[str, object]:
    resp = await h.http.post("/admin/explain", json={"request": request, "headers": headers})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_confidential_goes_local_only(hybrid: Harness, vendor: FakeOpenAI, local: FakeOpenAI) -> None:
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, extra_headers={"x-data-classification": "confidential"}
    )
    assert raw.headers["x-gateway-deployment"] == "open-local"
    assert vendor.calls() == 0 and local.calls() == 1
    why = await explain(
        hybrid, {"model": "chat", "messages": HELLO}, **{"x-data-classification": "confidential"}
    )
    assert why["order"] == ["open-local"]
    removed = {r["deployment"]: r["reason"] for r in why["removed"]}  # type: ignore[union-attr,index]
    assert removed["closed-best"].startswith("privacy floor: data location vendor")


async def test_confidential_is_refused_rather_than_sent_to_a_closed_vendor(
    hybrid: Harness, local: FakeOpenAI, vendor: FakeOpenAI
) -> None:
    local.always("local-llm", Fault.http(500), times=4)
    with pytest.raises(openai.APIStatusError) as caught:
        await hybrid.client.chat.completions.create(
            model="chat", messages=HELLO, extra_headers={"x-data-classification": "confidential"}
        )
    assert caught.value.status_code == 502
    assert vendor.calls() == 0


async def test_pii_in_prompt_requires_open(hybrid: Harness, vendor: FakeOpenAI) -> None:
    msg = [{"role": "user", "content": "charge card 4111 1111 1111 1111 please"}]
    raw = await hybrid.client.chat.completions.with_raw_response.create(model="chat", messages=msg)
    assert raw.headers["x-gateway-deployment"] == "open-local"
    assert vendor.calls() == 0


async def test_invalid_card_number_is_not_pii(hybrid: Harness) -> None:
    msg = [{"role": "user", "content": "order 4111 1111 1111 1112 shipped"}]  # fails Luhn
    raw = await hybrid.client.chat.completions.with_raw_response.create(model="chat", messages=msg)
    assert raw.headers["x-gateway-deployment"] == "closed-best"


async def test_free_tier_cost_cap_and_cheapest_first(hybrid: Harness) -> None:
    why = await explain(
        hybrid, {"model": "chat", "messages": HELLO, "max_tokens": 200}, **{"x-tenant": "free"}
    )
    assert why["order"] == ["closed-cheap", "open-local"]
    assert any("free-tier-cap requires: estimated cost" in r["reason"] for r in why["removed"])  # type: ignore[union-attr,index]
    raw = await hybrid.client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, max_tokens=200, extra_headers={"x-tenant": "free"}
    )
    assert raw.headers["x-gateway-deployment"] == "closed-cheap"


async def test_deny_rule_gives_a_clear_403(hybrid: Harness) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await hybrid.client.chat.completions.create(
            model="chat", messages=HELLO, extra_headers={"x-tenant": "intern"}
        )
    assert caught.value.body["code"] == "policy_denied"  # type: ignore[index]
    assert "interns may not use chat" in caught.value.message
    metrics = (await hybrid.http.get("/metrics")).text
    assert 'gateway_policy_denials_total{code="policy_denied",route="chat",tenant="intern"} 1.0' in metrics


async def test_request_cost_ceiling_header(hybrid: Harness) -> None:
    why = await explain(
        hybrid, {"model": "chat", "messages": HELLO, "max_tokens": 1000}, **{"x-max-cost-usd": "0.001"}
    )
    assert why["order"] == ["closed-cheap", "open-local"]
    why = await explain(
        hybrid, {"model": "chat", "messages": HELLO, "max_tokens": 1000}, **{"x-max-cost-usd": "0"}
    )
    assert why["refused"]["code"] == "no_allowed_deployment"  # type: ignore[index]


async def test_numeric_quality_is_a_minimum(hybrid: Harness) -> None:
    why = await explain(hybrid, {"model": "chat", "messages": HELLO}, **{"x-quality": "90"})
    assert why["order"] == ["closed-best"]


async def test_draft_images_go_local(hybrid: Harness, local: FakeOpenAI) -> None:
    raw = await hybrid.client.images.with_raw_response.generate(
        model="image", prompt="a cat", extra_headers={"x-quality": "draft"}
    )
    assert raw.headers["x-gateway-deployment"] == "local-image"


async def test_past_deprecation_date_leaves_routing(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    text = text.replace("quality: 95,\n", "quality: 95, deprecation_date: 2026-05-12,\n", 1)
    async with make_harness(text, today=dt.date(2026, 11, 22)) as h:
        raw = await h.client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
        assert raw.headers["x-gateway-deployment"] == "closed-cheap"
        metrics = (await h.http.get("/metrics")).text
        assert 'gateway_deployment_state{deployment="closed-best",state="deprecated"} 1.0' in metrics
        assert 'gateway_deployment_deprecation_days_left{deployment="closed-best"} -194.0' in metrics
    assert vendor.calls("big-model") == 0


def test_plan_is_pure_and_explains_itself() -> None:
    text = hybrid_policy_text(vendor="http://a/v1", vendor2="http://b/v1", local="http://c/v1")
    policy = parse_policy(text)
    signals = Signals(
        Classification.INTERNAL,
        frozenset(),
        None,
        None,
        None,
        Modality.CHAT,
        "default",
        UsageEstimate(10, 10),
    )
    plan = plan_route(
        policy.routes["chat"],
        signals,
        policy,
        health={"closed-best": "retired: gone"},
        today=dt.date(2026, 1, 1),
    )
    assert [d.name for d in plan.order] == ["closed-cheap", "open-local"]
    assert plan.explain()["removed"] == [{"deployment": "closed-best", "reason": "retired: gone"}]


def test_replayed_rule_outcomes_equal_a_fresh_plan() -> None:
    """Rule outcomes are replayed per request class (gateway/routing.py); they must equal a cold plan."""
    text = hybrid_policy_text(vendor="http://a/v1", vendor2="http://b/v1", local="http://c/v1")
    warm, cold_text = parse_policy(text), text

    def outcome(policy: object, signals: Signals, health: dict[str, str]) -> object:
        assert isinstance(policy, type(warm))
        try:
            plan = plan_route(
                policy.routes["chat"], signals, policy, health=health, today=dt.date(2026, 1, 1)
            )
        except Exception as exc:  # PolicyDenied / NoEligibleDeployment: compare the refusal too
            return (type(exc).__name__, str(exc))
        return plan.explain(), [r.min_quality for r in plan.hard]

    checked = 0
    for tenant in ("default", "free"):
        for cls in Classification:
            for health in ({}, {"closed-best": "retired: gone"}, {"open-local": "retired: gone"}):
                for estimate in (UsageEstimate(10, 10), UsageEstimate(200_000, 8_000)):
                    signals = Signals(cls, frozenset(), None, None, None, Modality.CHAT, tenant, estimate)
                    first = outcome(warm, signals, health)
                    replayed = outcome(warm, signals, health)
                    cold = outcome(parse_policy(cold_text), signals, health)  # new policy: nothing cached
                    assert first == replayed == cold, (tenant, cls, health, estimate)
                    checked += 1
    assert checked == 2 * len(Classification) * 3 * 2
