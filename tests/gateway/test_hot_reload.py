"""Hot reload: a valid file is swapped in atomically under load; an invalid one is refused and changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault

HELLO = [{"role": "user", "content": "hello"}]


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_reload_under_load_and_refusal_of_a_bad_file(
    make_harness: HarnessFactory, tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    policy_file = tmp_path / "policy.yaml"
    vendor.always("big-model", Fault.hang(0.3), times=40)
    async with make_harness(text, policy_file=policy_file, watch_interval_s=0.05) as h:
        first = h.gateway.store.current
        in_flight = [
            asyncio.create_task(h.client.chat.completions.create(model="chat", messages=HELLO))
            for _ in range(40)
        ]
        await asyncio.sleep(0.1)
        policy_file.write_text(text.replace("strategy: best_quality", "strategy: cheapest"))
        await wait_for(lambda: h.gateway.store.current is not first)
        answers = await asyncio.gather(*in_flight)
        assert all(a.choices[0].message.content == "Hello from vendor/big-model." for a in answers)
        raw = await h.client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
        assert raw.headers["x-gateway-deployment"] == "closed-cheap"

        good = h.gateway.store.current
        policy_file.write_text(text.replace("quality: 95", "quality: 195"))
        await wait_for(
            lambda: (
                'gateway_policy_reloads_total{result="refused"} 1.0'
                in h.gateway.accounting.metrics.exposition().decode()
            )
        )
        assert h.gateway.store.current is good
        resp = await h.http.post("/admin/reload")
        assert resp.status_code == 422
        assert (
            "policy.yaml:" in resp.json()["message"]
            and "must be at most 100 (got 195)" in resp.json()["message"]
        )
        raw = await h.client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
        assert raw.headers["x-gateway-deployment"] == "closed-cheap"


async def test_reload_keeps_unchanged_providers_and_closes_dropped_ones(
    make_harness: HarnessFactory, tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    policy_file = tmp_path / "policy.yaml"
    async with make_harness(text, policy_file=policy_file, watch_policy=False) as h:
        before = h.gateway.store.current.providers
        policy_file.write_text(text.replace("timeout_s: 2}\n  local", "timeout_s: 3}\n  local", 1))
        resp = await h.http.post("/admin/reload")
        assert resp.json() == {"reloaded": True, "message": "reloaded"}
        after = h.gateway.store.current.providers
        assert after["vendor"] is before["vendor"] and after["local"] is before["local"]
        assert after["vendor2"] is not before["vendor2"]
