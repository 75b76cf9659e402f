"""Issue 8, access: with keys configured every /v1 endpoint refuses a missing or wrong key, admin
endpoints need the admin key, and upstream addresses come only from the policy (never a header or body)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.database import Database
from gateway.keys import KeyStore
from tests.conftest import HarnessFactory
from tests.fakes.fault_proxy import FaultProxy
from tests.reliability.rel_support import ADMIN_KEY, SHAPE, FaultyOpenAI, matrix_policy

HELLO = [{"role": "user", "content": "hello"}]
V1 = [
    ("POST", "/v1/chat/completions", {"model": "chat", "messages": HELLO}),
    ("POST", "/v1/chat/completions", {"model": "chat", "messages": HELLO, "stream": True}),
    ("POST", "/v1/images/generations", {"model": "image", "prompt": "a lighthouse", "size": "256x256"}),
    ("POST", "/v1/embeddings", {"model": "embedding", "input": "hello"}),
    ("GET", "/v1/models", None),
]
ADMIN = [
    ("GET", "/admin/policy", None),
    ("POST", "/admin/reload", None),
    ("POST", "/admin/explain", {"request": {"model": "chat", "messages": HELLO}, "headers": {}}),
    ("GET", "/admin/deployments", None),
    ("POST", "/admin/deployments/p-chat/restore", None),
]


def issue_key(ledger: Path, tenant: str) -> str:
    db = Database(ledger)
    db.migrate()
    _, plaintext = KeyStore(db).create(tenant, "rel")  # type: ignore[call-arg]
    return str(plaintext)


@dataclass
class Keyed:
    http: httpx.AsyncClient
    remote: httpx.AsyncClient  # the same app, seen from a non-loopback address
    key: str
    primary: FaultyOpenAI
    backup: FaultyOpenAI
    trap: FaultyOpenAI
    trap_proxy: FaultProxy

    def upstream_calls(self) -> int:
        return self.primary.calls() + self.backup.calls()


@pytest.fixture
async def keyed(make_harness: HarnessFactory, tmp_path: Path) -> AsyncIterator[Keyed]:
    fakes = [FaultyOpenAI(n) for n in ("primary", "backup", "trap")]
    for f in fakes:
        await f.start()
    trap_proxy = FaultProxy.to_url(fakes[2].base_url)
    await trap_proxy.start()
    key = issue_key(tmp_path / "ledger.sqlite3", "acme")
    try:
        text = matrix_policy(fakes[0].base_url, fakes[1].base_url)
        async with make_harness(text, admin_key=ADMIN_KEY) as h:
            transport = httpx.ASGITransport(app=h.app, client=("203.0.113.7", 4000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as remote:
                yield Keyed(h.http, remote, key, fakes[0], fakes[1], fakes[2], trap_proxy)
    finally:
        await trap_proxy.stop()
        for f in fakes:
            await f.stop()


async def call(http: httpx.AsyncClient, method: str, path: str, body: Any, **headers: str) -> httpx.Response:
    return await http.request(method, path, json=body, headers=headers)


def wrong_keys(k: Keyed) -> dict[str, dict[str, str]]:
    last = "A" if k.key[-1] != "A" else "B"
    return {
        "missing": {},
        "empty bearer": {"authorization": "Bearer "},
        "wrong": {"authorization": "Bearer hgw_nope_nope"},
        "one char off": {"authorization": f"Bearer {k.key[:-1]}{last}"},
        "wrong scheme": {"authorization": f"Basic {k.key}"},
        "admin key as a client key": {"authorization": f"Bearer {ADMIN_KEY}"},
        "provider key": {"authorization": "Bearer sk-rel-primary-SECRET-5f1e2d3c4b5a"},
    }


@pytest.mark.parametrize(("method", "path", "body"), V1)
async def test_rel_every_v1_endpoint_refuses_a_missing_or_wrong_key(
    keyed: Keyed, method: str, path: str, body: Any
) -> None:
    for why, headers in wrong_keys(keyed).items():
        for http in (keyed.http, keyed.remote):
            resp = await call(http, method, path, body, **headers)
            assert resp.status_code == 401, (why, resp.status_code, resp.text)
            assert set(resp.json()["error"]) == SHAPE, why
    assert keyed.upstream_calls() == 0
    resp = await call(keyed.remote, method, path, body, authorization=f"Bearer {keyed.key}")
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(("method", "path", "body"), ADMIN)
async def test_rel_admin_endpoints_need_the_admin_key(
    keyed: Keyed, method: str, path: str, body: Any
) -> None:
    refusals = {**wrong_keys(keyed), "client key": {"authorization": f"Bearer {keyed.key}"}}
    refusals.pop("admin key as a client key")
    refusals["admin key, wrong case"] = {"authorization": f"Bearer {ADMIN_KEY.upper()}"}
    refusals["admin key with a suffix"] = {"authorization": f"Bearer {ADMIN_KEY}x"}
    for why, headers in refusals.items():
        for http in (keyed.http, keyed.remote):  # loopback is no substitute for the key once one is set
            resp = await call(http, method, path, body, **headers)
            assert resp.status_code in (401, 403), (why, resp.status_code, resp.text)
            assert set(resp.json()["error"]) == SHAPE, why
    resp = await call(keyed.remote, method, path, body, authorization=f"Bearer {ADMIN_KEY}")
    # /admin/reload answers 422 here only because this in-memory gateway has no policy file.
    assert resp.status_code in ((422,) if path == "/admin/reload" else (200,)), resp.text


def _injections(trap: str) -> tuple[dict[str, Any], dict[str, str]]:
    hostport = trap.split("//", 1)[1].split("/", 1)[0]
    body = {
        "base_url": trap,
        "api_base": trap,
        "baseURL": trap,
        "api_url": trap,
        "endpoint": trap,
        "custom_host": trap,
        "url": trap,
        "litellm_params": {"api_base": trap},
        "extra_body": {"base_url": trap},
    }
    headers = {
        "x-portkey-custom-host": trap,
        "x-base-url": trap,
        "openai-base-url": trap,
        "x-upstream-url": trap,
        "x-forwarded-host": hostport,
        "forwarded": f"host={hostport}",
        "x-original-url": trap,
        "host": hostport,
    }
    return body, headers


@pytest.mark.parametrize(("method", "path", "body"), [v for v in V1 if v[0] == "POST"])
async def test_rel_upstream_address_comes_only_from_the_policy(
    keyed: Keyed, method: str, path: str, body: Any
) -> None:
    trap = keyed.trap_proxy.url("/v1")
    extra_body, extra_headers = _injections(trap)
    resp = await call(
        keyed.http,
        method,
        path,
        {**body, **extra_body},
        authorization=f"Bearer {keyed.key}",
        **extra_headers,
    )
    assert resp.status_code == 200, resp.text
    assert keyed.primary.calls() == 1  # served where the policy says
    # A model name cannot be an address either: it is a route name or a 404.
    resp = await call(keyed.http, "POST", path, {**body, "model": trap}, authorization=f"Bearer {keyed.key}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    assert keyed.trap.received == [], "the trap vendor was called"
    assert keyed.trap_proxy.connections == [], "something connected to the trap address"
