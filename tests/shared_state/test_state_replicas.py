"""Two `gateway serve` processes sharing breakers, retired deployments and a budget through a real Redis.

The shared server is the one deploy/services.sh starts (HGW_TEST_REDIS_URL); each test uses its own key
prefix. The outage test starts a private redis-server (same binary) so it can stop and restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.gateway.test_serve_process import free_port, serve

pytestmark = [pytest.mark.slow, pytest.mark.needs_redis]
HELLO = [{"role": "user", "content": "hello"}]
CHAT = {"model": "chat", "messages": HELLO}
TENANTS = """
tenants:
  acme: {budget: {daily_usd: 1.0}}
budgets: {on_exhausted: refuse}
"""


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("HGW_TEST_REDIS_URL")
    if not url:
        pytest.skip("no Redis server: run the suite with `bash deploy/test.sh`, which starts one")
    return url


def write_policy(tmp: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI) -> Path:
    path = tmp / "policy.yaml"
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    path.write_text(text + TENANTS)
    return path


@contextlib.asynccontextmanager
async def replicas(policy: Path, tmp: Path, url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Two gateway processes on one Redis and one key prefix, each with its own SQLite ledger."""
    env = {"GATEWAY_WATCH_POLICY": "0", "GATEWAY_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}:"}
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    async with (
        serve(policy, tmp / "a", "--redis", url, env=env) as (base_a, _),
        serve(policy, tmp / "b", "--redis", url, env=env) as (base_b, _),
        httpx.AsyncClient(base_url=base_a, timeout=10) as a,
        httpx.AsyncClient(base_url=base_b, timeout=10) as b,
    ):
        yield a, b


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll `check` every 50 ms for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)


async def states(gw: httpx.AsyncClient) -> dict[str, object]:
    body = (await gw.get("/admin/deployments")).json()
    return {**body["deployments"], "retired": body["retired"]}


async def test_state_breaker_and_retirement_on_one_replica_are_honoured_by_the_other(
    tmp_path: Path, redis_url: str, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    policy = write_policy(tmp_path, vendor, vendor2, local)
    async with replicas(policy, tmp_path, redis_url) as (a, b):
        vendor.script("big-model", Fault.http(401, "invalid_api_key"))  # auth: A trips vendor's deployments
        resp = await a.post("/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200 and resp.headers["x-gateway-deployment"] == "closed-cheap"
        assert (await states(a))["closed-best"] == "open"

        async def b_sees_open() -> bool:
            return (await states(b))["closed-best"] == "open"

        await until(b_sees_open, 5, "replica B honours the breaker A tripped")
        calls = vendor.calls("big-model")
        resp = await b.post("/v1/chat/completions", json=CHAT)
        assert resp.headers["x-gateway-deployment"] == "closed-cheap"
        assert vendor.calls("big-model") == calls  # B skipped the open breaker without calling

        vendor2.script("small-model", Fault.http(404, "model_not_found"))  # B retires closed-cheap
        resp = await b.post("/v1/chat/completions", json=CHAT)
        assert resp.headers["x-gateway-deployment"] == "open-local"

        async def a_sees_retired() -> bool:
            return "closed-cheap" in (await states(a))["retired"]  # type: ignore[operator]

        await until(a_sees_retired, 5, "replica A sees the deployment B retired")
        assert (await a.post("/v1/chat/completions", json=CHAT)).headers[
            "x-gateway-deployment"
        ] == "open-local"
        assert (await a.post("/admin/deployments/closed-cheap/restore")).json()["restored"] is True

        async def b_sees_restored() -> bool:
            return (await states(b))["closed-cheap"] == "closed"

        await until(b_sees_restored, 5, "replica B sees the restore made through A")


async def test_state_a_shared_budget_is_never_overspent(
    tmp_path: Path, redis_url: str, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    # Images cost exactly their estimate ($0.04), so the $1.00 budget fits exactly 25 of them: alone, each
    # replica would admit 25 (50 in all).
    vendor.always("image-pro", Fault.hang(0.05), times=1000)
    policy = write_policy(tmp_path, vendor, vendor2, local)
    body = {"model": "image", "prompt": "a lighthouse", "response_format": "b64_json"}
    async with replicas(policy, tmp_path, redis_url) as (a, b):

        async def one(gw: httpx.AsyncClient) -> tuple[int, str]:
            resp = await gw.post("/v1/images/generations", json=body, headers={"x-tenant": "acme"})
            return resp.status_code, resp.json().get("error", {}).get("code", "")

        results: list[tuple[int, str]] = []
        for _ in range(3):  # waves of 120 concurrent requests, half through each replica
            results += await asyncio.gather(*[one(a if i % 2 else b) for i in range(120)])
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 25
    assert all(code == "insufficient_quota" for s, code in results if s != 200)
    spent = 0.0
    for replica in ("a", "b"):
        with sqlite3.connect(tmp_path / replica / "ledger.sqlite3") as db:
            spent += db.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE status = 200"
            ).fetchone()[0]
    assert spent <= 1.0 + 1e-9


class PrivateRedis:
    """A redis-server on loopback (the binary services.sh installed) that a test may stop and start."""

    def __init__(self, port: int) -> None:
        binary = os.environ.get("HGW_TEST_REDIS_SERVER") or shutil.which("redis-server")
        if not binary:
            pytest.skip("no redis-server: run the suite with `bash deploy/test.sh`, which installs it")
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        self._proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.05)
        raise AssertionError("redis-server did not start in 5 s")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait, 5)


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_state_redis_outage_degrades_to_local_and_recovers(
    tmp_path: Path, private_redis: PrivateRedis, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    policy = write_policy(tmp_path, vendor, vendor2, local)
    acme = {"x-tenant": "acme"}  # a budgeted tenant: its reservations go through Redis while it is up
    async with replicas(policy, tmp_path, private_redis.url) as (a, b):
        for gw in (a, b):
            assert (await gw.post("/v1/chat/completions", json=CHAT, headers=acme)).status_code == 200
        await private_redis.stop()
        for gw in (a, b):  # requests keep being answered, promptly, while Redis is gone
            for _ in range(5):
                started = time.monotonic()
                resp = await gw.post("/v1/chat/completions", json=CHAT, headers=acme)
                assert resp.status_code == 200 and time.monotonic() - started < 2.0
        vendor.script("big-model", Fault.http(401, "invalid_api_key"))  # A trips while Redis is down
        assert (await a.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await states(a))["closed-best"] == "open"
        await asyncio.sleep(0.5)
        assert (await states(b))["closed-best"] == "closed"  # decided locally: B cannot know yet

        await private_redis.start()  # an empty Redis: what A decided meanwhile is pushed again

        async def b_sees_open() -> bool:
            return (await states(b))["closed-best"] == "open"

        await until(b_sees_open, 10, "replica B honours A's breaker once Redis is back")
        for gw in (a, b):
            resp = await gw.post("/v1/chat/completions", json=CHAT, headers=acme)
            assert resp.status_code == 200 and resp.headers["x-gateway-deployment"] == "closed-cheap"
