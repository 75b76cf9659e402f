"""Keys, tenants, budgets, rate limits and reports (issue 5), through the real app and the openai client."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import openai
import pytest

from gateway.database import Database
from gateway.keys import KeyStore
from gateway.reports import closed_dependency, spend_report
from tests.conftest import Harness, HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault

HELLO = [{"role": "user", "content": "hello"}]

TENANTS = """
tenants:
  acme: {{budget: {{daily_usd: {budget}}}}}
  secretive: {{default_classification: confidential}}
  imagers: {{routes: [image]}}
budgets: {{on_exhausted: {mode}}}
"""


def policy(
    vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI, budget: float = 1.0, mode: str = "refuse"
) -> str:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    return text + TENANTS.format(budget=budget, mode=mode)


def issue_key(tmp_path: Path, tenant: str, **limits: float | int) -> str:
    db = Database(tmp_path / "ledger.sqlite3")
    db.migrate()
    _, plaintext = KeyStore(db).create(tenant, "test", **limits)  # type: ignore[arg-type]
    return plaintext


def client_for(h: Harness, key: str | None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://gateway/v1", api_key=key or "none", http_client=h.http, max_retries=0
    )


async def test_keys_required_once_configured_and_tenant_comes_from_the_key(
    make_harness: HarnessFactory, tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    key = issue_key(tmp_path, "acme")
    async with make_harness(policy(vendor, vendor2, local)) as h:
        for bad in (None, "hgw_nope_nope", key[:-1] + ("A" if key[-1] != "A" else "B")):
            with pytest.raises(openai.AuthenticationError):
                await client_for(h, bad).chat.completions.create(model="chat", messages=HELLO)
        with pytest.raises(openai.AuthenticationError):
            await client_for(h, None).models.list()
        good = client_for(h, key)
        await good.chat.completions.create(
            model="chat", messages=HELLO, extra_headers={"x-tenant": "someone-else"}
        )
        rows = await h.ledger_rows()
        assert rows[-1]["tenant"] == "acme" and rows[-1]["key_id"] == key.split("_")[1]
        KeyStore(Database(tmp_path / "ledger.sqlite3")).revoke(key.split("_")[1])
        await asyncio.to_thread(h.app.state.keys.refresh)  # what the background refresher does every 2 s
        with pytest.raises(openai.AuthenticationError):
            await good.chat.completions.create(model="chat", messages=HELLO)


async def test_no_plaintext_key_at_rest_or_in_logs(
    make_harness: HarnessFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    vendor: FakeOpenAI,
    vendor2: FakeOpenAI,
    local: FakeOpenAI,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = issue_key(tmp_path, "acme")
    secret = key.split("_", 2)[2]
    async with make_harness(policy(vendor, vendor2, local)) as h:
        await client_for(h, key).chat.completions.create(model="chat", messages=HELLO)
        resp = await h.http.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": HELLO},
            headers={"authorization": f"Bearer {key}x"},
        )
        assert resp.status_code == 401 and secret not in resp.text
        metrics = (await h.http.get("/metrics")).text
        await h.ledger_rows()
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and "ledger.sqlite3" in str(p)]  # db, WAL, spool
    blobs = b"".join(p.read_bytes() for p in stored)
    for needle in (key, secret, "sk-vendor-SECRET"):
        assert needle.encode() not in blobs
        assert needle not in caplog.text
        assert needle not in metrics


async def test_open_mode_answers_loopback_only(hybrid: Harness) -> None:
    transport = httpx.ASGITransport(app=hybrid.app, client=("203.0.113.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as remote:
        resp = await remote.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO})
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "no_keys_configured"
        assert (await remote.get("/admin/policy")).status_code == 403


async def test_concurrent_requests_never_overspend_a_budget(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    budget = 0.05
    vendor.always("big-model", Fault.hang(0.02), times=400)
    async with make_harness(policy(vendor, vendor2, local, budget=budget)) as h:
        body = {"model": "chat", "messages": HELLO, "max_tokens": 100}

        async def one() -> int:
            resp = await h.http.post("/v1/chat/completions", json=body, headers={"x-tenant": "acme"})
            return resp.status_code

        statuses = []
        for _ in range(3):  # waves: settled reservations free room for later requests
            statuses += await asyncio.gather(*[one() for _ in range(100)])
        rows = await h.ledger_rows()
    served = [r for r in rows if r["status"] == 200]
    spent = sum(r["cost_usd"] for r in served)
    assert spent <= budget
    assert statuses.count(429) > 0 and statuses.count(200) == len(served) > 0
    refused = [r for r in rows if r["status"] == 429]
    assert all(r["error_code"] == "insufficient_quota" for r in refused)


async def test_budget_exhausted_can_downgrade_to_local(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    async with make_harness(policy(vendor, vendor2, local, budget=0.0, mode="downgrade")) as h:
        raw = await h.client.chat.completions.with_raw_response.create(
            model="chat", messages=HELLO, extra_headers={"x-tenant": "acme"}
        )
        assert raw.headers["x-gateway-deployment"] == "open-local"
        metrics = (await h.http.get("/metrics")).text
        assert 'gateway_budget_rejections_total{period="day",tenant="acme"} 1.0' in metrics
        assert 'gateway_budget_remaining_usd{period="day",scope="tenant:acme",tenant="acme"} 0.0' in metrics
    assert vendor.calls() == 0


async def test_key_budget_and_rate_limit(
    make_harness: HarnessFactory, tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    key = issue_key(tmp_path, "beta", rpm=3)
    async with make_harness(policy(vendor, vendor2, local)) as h:
        c = client_for(h, key)
        for _ in range(3):
            await c.chat.completions.create(model="chat", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="chat", messages=HELLO)
        assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        assert int(caught.value.response.headers["retry-after"]) >= 1
    key2 = issue_key(tmp_path, "gamma", daily_usd=0.0)
    async with make_harness(policy(vendor, vendor2, local)) as h:
        with pytest.raises(openai.RateLimitError) as caught:
            await client_for(h, key2).chat.completions.create(model="chat", messages=HELLO)
        assert caught.value.body["code"] == "insufficient_quota"  # type: ignore[index]


async def test_spend_survives_a_restart(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = policy(vendor, vendor2, local, budget=0.0001)
    async with make_harness(text.replace("daily_usd: 0.0001", "daily_usd: 1")) as h:
        await h.client.chat.completions.create(
            model="chat", messages=HELLO, max_tokens=10, extra_headers={"x-tenant": "acme"}
        )
    async with make_harness(text.replace("daily_usd: 0.0001", "daily_usd: 0.0002")) as h:
        # the first run spent ~$0.000108 (11 + 5 tokens); a worst case of 10 more output tokens no longer fits
        with pytest.raises(openai.RateLimitError):
            await h.client.chat.completions.create(
                model="chat", messages=HELLO, max_tokens=10, extra_headers={"x-tenant": "acme"}
            )


async def test_tenant_defaults_and_allowed_routes(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    async with make_harness(policy(vendor, vendor2, local)) as h:
        raw = await h.client.chat.completions.with_raw_response.create(
            model="chat", messages=HELLO, extra_headers={"x-tenant": "secretive"}
        )
        assert raw.headers["x-gateway-deployment"] == "open-local"
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await h.client.chat.completions.create(
                model="chat", messages=HELLO, extra_headers={"x-tenant": "imagers"}
            )
        assert caught.value.body["code"] == "route_not_allowed"  # type: ignore[index]


async def test_reports_equal_the_ledger_sums(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.http(500), Fault.http(500))
    for tenant in ("a", "b", "b", "c"):
        await hybrid.client.chat.completions.create(
            model="chat", messages=HELLO, extra_headers={"x-tenant": tenant}
        )
    await hybrid.client.images.generate(model="image", prompt="x", n=2, extra_headers={"x-tenant": "a"})
    await hybrid.http.post("/v1/chat/completions", json={"model": "nope", "messages": HELLO})
    rows = await hybrid.ledger_rows()
    db = hybrid.gateway.accounting.ledger.db
    for by in ("tenant", "route", "provider", "deployment"):
        report = spend_report(db, by, since=0)
        assert sum(r["requests"] for r in report) == len(rows)
        assert sum(r["spend_usd"] for r in report) == pytest.approx(sum(r["cost_usd"] for r in rows))
        assert sum(r["images"] for r in report) == sum(r["images"] for r in rows) == 2
    by_tenant = {r["tenant"]: r for r in spend_report(db, "tenant", since=0)}
    assert by_tenant["b"]["requests"] == 2 and by_tenant["default"]["errors"] == 1
    assert by_tenant["a"]["fallbacks"] + by_tenant["b"]["fallbacks"] + by_tenant["c"]["fallbacks"] == 1
    audit = closed_dependency(db, hybrid.gateway.store.current.policy, since=0)
    chat = next(r for r in audit["routes"] if r["route"] == "chat")
    assert chat["requests"] == 4 and chat["closed_traffic_share"] == 1.0 and chat["open_fallback"] is True
    assert audit["image_break_even"][0]["break_even_images_per_day"] == round(3.6 * 24 / 0.04)


@pytest.mark.needs_postgres
async def test_postgres_ledger_keys_and_reports(
    make_harness: HarnessFactory,
    vendor: FakeOpenAI,
    vendor2: FakeOpenAI,
    local: FakeOpenAI,
    postgres_dsn: str,
) -> None:
    db = Database(postgres_dsn)
    db.migrate()
    _, key = KeyStore(db).create("pg-tenant", "pg")
    async with make_harness(policy(vendor, vendor2, local), ledger=postgres_dsn) as h:
        c = client_for(h, key)
        for _ in range(3):
            await c.chat.completions.create(model="chat", messages=HELLO)
        await h.gateway.accounting.ledger.aflush()
    rows = db.query("SELECT tenant, cost_usd FROM requests WHERE tenant = 'pg-tenant'")
    assert len(rows) == 3
    report = {r["tenant"]: r for r in spend_report(db, "tenant", since=0)}
    assert report["pg-tenant"]["spend_usd"] == pytest.approx(sum(r[1] for r in rows))
    assert db.migrate() == []  # migrations are recorded and not applied twice
