"""Build the breakers, budget book and rate limiter: in-process, or shared by replicas through Redis.

With no Redis URL everything stays in this process exactly as before and `start`/`aclose` do nothing.
With one, each component is its shared subclass (same methods) and one background loop syncs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.breaker import Breakers
from gateway.budgets import BudgetBook
from gateway.policy import BreakerSettings
from gateway.ratelimit import RateLimiter
from gateway.redis_state import RedisState


@dataclass(slots=True)
class SharedState:
    breakers: Breakers
    budgets: BudgetBook
    limiter: RateLimiter
    redis: RedisState | None = None

    async def start(self) -> None:
        """Connect and start syncing (call inside the app's lifespan); a dead Redis does not stop it."""
        if self.redis is not None:
            await self.redis.start()

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def build_shared_state(
    breaker_settings: Callable[[], BreakerSettings], redis_url: str | None, prefix: str = "hgw:"
) -> SharedState:
    if not redis_url:
        return SharedState(Breakers(breaker_settings), BudgetBook(), RateLimiter())
    from gateway.shared_breakers import SharedBreakers
    from gateway.shared_budgets import SharedBudgetBook
    from gateway.shared_ratelimit import SharedRateLimiter

    redis = RedisState(redis_url, prefix=prefix)
    # Budgets first: their loop pushes settlements, which free budget for waiting requests.
    budgets = SharedBudgetBook(redis)
    return SharedState(SharedBreakers(breaker_settings, redis), budgets, SharedRateLimiter(redis), redis)
