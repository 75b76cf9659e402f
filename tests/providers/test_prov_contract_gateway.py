"""The same contract through the real gateway app: each vendor failure ends in the same client outcome.

Route `main` tries the provider under test, then a healthy FakeOpenAI. Retryable and availability failures
(429, 500, timeout, retired model, bad key) fall back to the second deployment with the decision headers
saying so; a content-policy refusal stops (the policy default) with OpenAI's 400 content_policy_violation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import Harness, HarnessFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.providers.vendors import FAILURES, KEY_ENV, KINDS, VendorCase, gateway_policy

pytestmark = pytest.mark.parametrize("vendor_case", KINDS, indirect=True)


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI("backup")
    await fake.start()
    yield fake
    await fake.stop()


async def _ask(harness: Harness, case: VendorCase) -> Any:
    if case.modality == "chat":
        return await harness.client.chat.completions.with_raw_response.create(
            model="main", messages=[{"role": "user", "content": "hello"}]
        )
    return await harness.client.images.with_raw_response.generate(
        model="main", prompt="a red fox", size="1024x768"
    )


async def test_success_is_served_by_the_provider_and_priced(
    vendor_case: VendorCase, backup: FakeOpenAI, make_harness: HarnessFactory
) -> None:
    async with make_harness(gateway_policy(vendor_case, backup.base_url)) as harness:
        raw = await _ask(harness, vendor_case)
        rows = await harness.ledger_rows()
    assert raw.status_code == 200
    assert raw.headers["x-gateway-deployment"] == "primary"
    assert raw.headers["x-gateway-provider"] == "under_test"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert float(raw.headers["x-gateway-cost-usd"]) > 0  # priced by the policy or litellm's map, never $0
    assert rows[0]["cost_usd"] > 0 and rows[0]["status"] == 200
    assert backup.calls() == 0


@pytest.mark.parametrize("scenario", [s for s in FAILURES if s != "content_policy"])
async def test_failure_falls_back_to_the_healthy_deployment(
    vendor_case: VendorCase,
    scenario: str,
    backup: FakeOpenAI,
    make_harness: HarnessFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if scenario == "bad_key":
        monkeypatch.setenv(KEY_ENV, "sk-wrong-SECRET-0000")
    vendor_case.arm(scenario)
    async with make_harness(gateway_policy(vendor_case, backup.base_url)) as harness:
        raw = await _ask(harness, vendor_case)
        health = harness.gateway.health()
    assert raw.status_code == 200
    assert raw.headers["x-gateway-deployment"] == "secondary"
    assert raw.headers["x-gateway-provider"] == "backup"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert backup.calls("backup-model") == 1
    if scenario == "retired":
        assert "primary" in health  # retired until restored: later requests skip it
    if vendor_case.modality == "chat":
        assert raw.parse().choices[0].message.content == "Hello from backup/backup-model."


async def test_content_policy_refusal_stops_with_openai_400(
    vendor_case: VendorCase, backup: FakeOpenAI, make_harness: HarnessFactory
) -> None:
    vendor_case.arm("content_policy")
    async with make_harness(gateway_policy(vendor_case, backup.base_url)) as harness:
        with pytest.raises(openai.BadRequestError) as caught:
            await _ask(harness, vendor_case)
    assert caught.value.status_code == 400
    assert caught.value.code == "content_policy_violation"
    assert backup.calls() == 0


async def test_stream_before_first_chunk_falls_back_and_after_it_relays(
    vendor_case: VendorCase, backup: FakeOpenAI, make_harness: HarnessFactory
) -> None:
    if not vendor_case.streams:
        pytest.skip(f"{vendor_case.kind} serves images; nothing to stream")
    vendor_case.arm("server_error")
    async with make_harness(gateway_policy(vendor_case, backup.base_url)) as harness:
        async with harness.http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "main", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ) as resp:
            body = (await resp.aread()).decode()
            assert resp.headers["x-gateway-deployment"] == "secondary"
        assert body.rstrip().endswith("data: [DONE]") and '"model":"backup-model"' in body
        async with harness.http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "main", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ) as resp:
            body = (await resp.aread()).decode()
            assert resp.headers["x-gateway-deployment"] == "primary"
        assert body.rstrip().endswith("data: [DONE]") and '"content":"Hello"' in body
