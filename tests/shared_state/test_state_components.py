"""The shared components against a real Redis, two "replicas" in one process (each its own RedisState)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.budgets import BudgetExhausted, Limit, period_key
from gateway.ratelimit import RateLimited
from gateway.redis_state import RedisState
from gateway.shared_budgets import SharedBudgetBook
from gateway.shared_ratelimit import SharedRateLimiter

pytestmark = pytest.mark.needs_redis
DAY = Limit("acme", "tenant:acme", "day", 1.0)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("HGW_TEST_REDIS_URL")
    if not url:
        pytest.skip("no Redis server: run the suite with `bash deploy/test.sh`, which starts one")
    return url


@contextlib.asynccontextmanager
async def replica(url: str, prefix: str) -> AsyncIterator[RedisState]:
    state = RedisState(url, prefix=prefix, interval_s=0.05)
    try:
        yield state
    finally:
        await state.aclose()


async def until(check: Callable[[], Awaitable[bool] | bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.02)


async def test_state_rate_limit_windows_are_shared(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    async with replica(redis_url, prefix) as s1, replica(redis_url, prefix) as s2:
        one, two = SharedRateLimiter(s1), SharedRateLimiter(s2)
        await s1.start()
        await s2.start()
        for _ in range(3):
            one.admit("key:k", 5, None, 10)
        two.admit("key:k", 5, None, 10)  # two learns the scope is active here, and pulls it from now on
        await until(lambda: two._others("key:k")[0] == 3, 5, "replica two sees replica one's 3 requests")
        two.admit("key:k", 5, None, 10)
        with pytest.raises(RateLimited) as caught:
            two.admit("key:k", 5, None, 10)
        assert 0 < caught.value.retry_after <= 60


async def test_state_a_dead_replicas_reservations_expire_with_their_lease(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    async with replica(redis_url, prefix) as s1, replica(redis_url, prefix) as s2:
        await s1.start()
        await s2.start()
        dead, alive = SharedBudgetBook(s1, lease_s=1.0), SharedBudgetBook(s2, lease_s=1.0)
        await dead.areserve([DAY], 0.9)
        await s1.aclose()  # the replica "dies" with its reservation open: nobody renews the lease
        with pytest.raises(BudgetExhausted):
            await alive.areserve([DAY], 0.2)

        async def fits() -> bool:
            try:
                res = await alive.areserve([DAY], 0.2)
            except BudgetExhausted:
                return False
            alive.settle(res, 0.2)
            return True

        await until(fits, 5, "the dead replica's reservation expires")


async def test_state_leases_of_live_reservations_are_renewed_and_settles_swap_atomically(
    redis_url: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    async with replica(redis_url, prefix) as s1, replica(redis_url, prefix) as s2:
        await s1.start()
        await s2.start()
        one, two = SharedBudgetBook(s1, lease_s=0.6), SharedBudgetBook(s2, lease_s=0.6)
        held = await one.areserve([DAY], 0.9)
        await asyncio.sleep(1.5)  # well past the lease: the loop of replica one kept renewing it
        with pytest.raises(BudgetExhausted):
            await two.areserve([DAY], 0.2)
        one.settle(held, 0.5)
        res = None

        async def fits() -> bool:
            nonlocal res
            with contextlib.suppress(BudgetExhausted):
                res = await two.areserve([DAY], 0.5)
            return res is not None

        await until(fits, 5, "the settlement frees all but the real cost")
        with pytest.raises(BudgetExhausted):  # 0.5 spent + 0.5 reserved: nothing more fits
            await two.areserve([DAY], 0.01)


async def test_state_redis_down_each_replica_keeps_to_its_share(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    async with replica(redis_url, prefix) as s1, replica(redis_url, prefix) as s2:
        await s1.start()
        await s2.start()
        one = SharedBudgetBook(s1)
        SharedBudgetBook(s2)
        await until(lambda: s1.replicas == 2, 5, "replica one counts two live replicas")
        one.settle(await one.areserve([DAY], 0.2), 0.2)
        await until(lambda: one.snapshot()[0][4] == pytest.approx(0.8), 5, "the spend reaches Redis")
        s1.up = False  # as after a failed call: decide locally, without Redis
        taken = [one.reserve([DAY], 0.1) for _ in range(4)]  # half of the $0.80 left
        with pytest.raises(BudgetExhausted):
            one.reserve([DAY], 0.1)
        for res in taken:
            one.settle(res, 0.1)
        s1.up = True  # back: the local spend is pushed to Redis
        key = f"{prefix}budget:tenant:acme:day:{period_key('day', time.time())}"

        async def pushed() -> bool:
            return float(await s2.client.hget(key, "spent") or 0) == pytest.approx(0.6)

        await until(pushed, 5, "the spend made while Redis was down reaches it")
        assert one.snapshot()[0][4] == pytest.approx(0.4)
        two = SharedBudgetBook(s2)
        with pytest.raises(BudgetExhausted):
            await two.areserve([DAY], 0.41)
        await two.areserve([DAY], 0.39)
