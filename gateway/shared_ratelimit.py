"""Rate-limit windows shared by replicas through Redis, eventually (within ~interval_s).

Each replica keeps its own sliding windows and decides locally (no network on the request path). The
background loop publishes, per scope it served in the last minute, this replica's count, tokens and when
its oldest entry leaves the window (one field per replica in a Redis hash), and reads the other replicas'
fields, which `admit` adds to its own. A replica that stops publishing (it died) is ignored after
`STALE_S`. Within one sync interval replicas can together admit a little more than the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.ratelimit import WINDOW_S, RateLimiter
from gateway.redis_state import RedisState

STALE_S = 5.0


class SharedRateLimiter(RateLimiter):
    """`RateLimiter` that also counts the other replicas' requests (see module docstring)."""

    def __init__(self, state: RedisState, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self._state = state
        self._remote: dict[str, tuple[int, int, float | None]] = {}
        self._active: dict[str, float] = {}  # scope -> when it last had an entry here
        state.register(self)

    def _others(self, scope: str) -> tuple[int, int, float | None]:
        self._active[scope] = self._clock()
        return self._remote.get(scope, (0, 0, None))

    async def sync(self, state: RedisState) -> None:
        """Publish this replica's windows and read the others', one pipeline for every active scope."""
        now, wall = self._clock(), time.time()
        for scope, seen in list(self._active.items()):
            if now - seen > WINDOW_S and not self._windows.get(scope):
                del self._active[scope]
                self._remote.pop(scope, None)
        scopes = list(self._active)
        if not scopes:
            return

        async def exchange() -> list[object]:
            async with state.client.pipeline(transaction=False) as pipe:
                for scope in scopes:
                    key = state.key("rl", scope)
                    window = [e for e in self._windows.get(scope, ()) if now - e.at < WINDOW_S]
                    if window:
                        left = WINDOW_S - (now - window[0].at)
                        tokens = sum(e.tokens for e in window)
                        pipe.hset(key, state.replica, f"{len(window)} {tokens} {left:.3f} {wall:.3f}")
                        pipe.expire(key, int(WINDOW_S) + 5)
                    else:
                        pipe.hdel(key, state.replica)
                        pipe.expire(key, int(WINDOW_S) + 5)
                    pipe.hgetall(key)
                return list(await pipe.execute())

        replies = await state.call(exchange)
        for scope, fields in zip(scopes, replies[2::3], strict=True):
            assert isinstance(fields, dict)
            self._remote[scope] = _sum_others(fields, state.replica, wall)


def _sum_others(fields: dict[str, str], me: str, wall: float) -> tuple[int, int, float | None]:
    count = tokens = 0
    wait: float | None = None
    for replica, value in fields.items():
        n, t, left, at = value.split()
        age = wall - float(at)
        if replica == me or age > STALE_S or float(left) - age <= 0:
            continue
        count, tokens = count + int(n), tokens + int(t)
        wait = min(wait if wait is not None else WINDOW_S, float(left) - age)
    return count, tokens, wait
