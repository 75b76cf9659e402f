"""Shared fixtures: fake upstreams on loopback, the real app in-process, the official openai client."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.app import build_app
from gateway.policy_loader import parse_policy
from gateway.settings import Settings
from tests.fakes.openai_upstream import FakeOpenAI

HYBRID_POLICY = """
version: 1
providers:
  vendor:   {{kind: openai_compatible, base_url: "{vendor}", api_key_env: FAKE_VENDOR_KEY, timeout_s: {timeout}}}
  vendor2:  {{kind: openai_compatible, base_url: "{vendor2}", api_key_env: FAKE_VENDOR2_KEY, timeout_s: {timeout}}}
  local:    {{kind: openai_compatible, base_url: "{local}", usd_per_hour: 3.6, timeout_s: {timeout}}}
deployments:
  closed-best:  {{provider: vendor, model: big-model, modality: chat, openness: closed, data: {{location: vendor}}, quality: 95,
                 price: {{input_per_mtok: 3.0, output_per_mtok: 15.0}}, context_window: 8000}}
  closed-cheap: {{provider: vendor2, model: small-model, modality: chat, openness: closed, data: {{location: vendor}}, quality: 80,
                 price: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}, context_window: 128000}}
  open-local:   {{provider: local, model: local-llm, modality: chat, openness: open, data: {{location: local}}, quality: 60,
                 est_device_seconds: 1, context_window: 32000}}
  closed-image: {{provider: vendor, model: image-pro, modality: image, openness: closed, data: {{location: vendor}}, quality: 95,
                 price: {{per_image: 0.04}}}}
  local-image:  {{provider: local, model: sd-local, modality: image, openness: open, data: {{location: local}}, quality: 70,
                 est_device_seconds: 2}}
  closed-embed: {{provider: vendor, model: embed-large, modality: embedding, openness: closed, data: {{location: vendor}},
                 price: {{input_per_mtok: 0.13}}}}
  local-embed:  {{provider: local, model: minilm, modality: embedding, openness: open, data: {{location: local}}, est_device_seconds: 0.01}}
routes:
  chat:
    candidates: [closed-best, closed-cheap, open-local]
    strategy: best_quality
    rules:
      - {{name: confidential-stays-local, when: {{classification: confidential}}, require: {{data_location: [local, on_prem]}}}}
      - {{name: pii-open-only, when: {{pii: true}}, require: {{openness: open}}}}
      - {{name: free-tier-cap, when: {{tenant: free}}, require: {{max_cost_usd: 0.002}}, prefer: cheapest}}
      - {{name: no-interns, when: {{tenant: intern}}, deny: "interns may not use chat"}}
  image:
    candidates: [closed-image, local-image]
    strategy: ordered
    rules:
      - {{name: drafts-local, when: {{quality: draft}}, require: {{openness: open}}}}
  embedding:
    candidates: [closed-embed, local-embed]
fallback:
  retries: {retries}
  backoff_ms: [1, 5]
  deadline_ms: {deadline_ms}
  max_retry_after_ms: 200
  breaker: {{failure_ratio: 0.5, min_requests: {min_requests}, window_s: 30, open_s: 30}}
"""


def hybrid_policy_text(**kw: Any) -> str:
    values = {"timeout": 2, "retries": 1, "deadline_ms": 10000, "min_requests": 50, **kw}
    return HYBRID_POLICY.format(**values)


@pytest.fixture
async def vendor() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI("vendor")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def vendor2() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI("vendor2")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def local() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI("local")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def _vendor_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VENDOR_KEY", "sk-vendor-SECRET-1234567890")
    monkeypatch.setenv("FAKE_VENDOR2_KEY", "sk-vendor2-SECRET-0987654321")


class Harness:
    """The real app in-process, reached through the official openai client over httpx's ASGI transport."""

    def __init__(self, app: Any, http: httpx.AsyncClient, client: openai.AsyncOpenAI, ledger: Path) -> None:
        self.app = app
        self.http = http
        self.client = client
        self.ledger_path = ledger

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    async def ledger_rows(self) -> list[dict[str, Any]]:
        ledger = self.gateway.accounting.ledger
        await ledger.aflush()
        cols = [c[1] for c in ledger.query("PRAGMA table_info(requests)")]
        return [
            dict(zip(cols, row, strict=True)) for row in ledger.query("SELECT * FROM requests ORDER BY ts")
        ]


HarnessFactory = Callable[..., contextlib.AbstractAsyncContextManager[Harness]]


@pytest.fixture
def make_harness(tmp_path: Path) -> HarnessFactory:
    @contextlib.asynccontextmanager
    async def factory(
        policy_text: str,
        *,
        policy_file: Path | None = None,
        today: dt.date | None = None,
        ledger: str | Path | None = None,
        **settings: Any,
    ) -> AsyncIterator[Harness]:
        ledger = ledger or tmp_path / "ledger.sqlite3"
        if policy_file is not None:
            policy_file.write_text(policy_text)
            app = build_app(Settings(policy_path=policy_file, ledger_path=ledger, **settings))
        else:
            policy = parse_policy(policy_text, "test-policy.yaml")
            app = build_app(
                Settings(
                    policy_path=tmp_path / "unused.yaml", ledger_path=ledger, watch_policy=False, **settings
                ),
                policy=policy,
            )
        if today is not None:
            app.state.gateway.today = lambda: today
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                client = openai.AsyncOpenAI(
                    base_url="http://gateway/v1", api_key="client-key", http_client=http, max_retries=0
                )
                yield Harness(app, http, client, ledger)

    return factory


@pytest.fixture
async def hybrid(
    make_harness: HarnessFactory, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> AsyncIterator[Harness]:
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    async with make_harness(text) as h:
        yield h


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A fresh database on the PostgreSQL server deploy/services.sh started (HGW_TEST_PG_DSN)."""
    import os
    import uuid

    import psycopg

    base = os.environ.get("HGW_TEST_PG_DSN")
    if not base:
        pytest.skip("no PostgreSQL server: run the suite with `bash deploy/test.sh`, which starts one")
    name = "hgw_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
