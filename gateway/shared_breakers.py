"""Breakers and retired deployments shared by replicas through Redis, eventually (within ~interval_s).

Decisions stay local and synchronous (`allow` and `record` never touch the network). Every transition made
here (open, close after a probe, trip, retire, restore) is queued and pushed by the background loop; the
same loop pulls the transitions other replicas made. One Redis hash holds, per deployment, the last
transition with a version that a Lua script increments atomically, so all replicas apply transitions in
the same order; times are Redis's own clock, so replicas' clocks need not agree. Failure ratios are
counted per replica (each sees its own traffic); a breaker opened anywhere is honoured everywhere.
With Redis down the queue waits (one entry per deployment) and the replicas decide alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gateway.breaker import Breakers, BreakerState
from gateway.policy import BreakerSettings
from gateway.redis_state import RedisState

# KEYS[1] = hash; ARGV = name, state, reason. Returns the new version.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local v = 1
if cur then v = cjson.decode(cur)['v'] + 1 end
local entry = {v = v, s = ARGV[2], at = string.format('%.6f', now), why = ARGV[3]}
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
return v
"""

# KEYS[1] = hash. Returns Redis's time and every deployment's last transition.
_PULL = """
local t = redis.call('TIME')
return {string.format('%d.%06d', t[1], t[2]), redis.call('HGETALL', KEYS[1])}
"""


class SharedBreakers(Breakers):
    """`Breakers` whose transitions reach the other replicas through `state` (see module docstring)."""

    def __init__(
        self,
        settings: Callable[[], BreakerSettings],
        state: RedisState,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, clock)
        self._state = state
        self._key = state.key("breakers")
        self._pending: dict[str, tuple[BreakerState, str]] = {}  # latest local transition per deployment
        self._seen: dict[str, int] = {}  # last version applied or published, per deployment
        self._generation = 0
        self._publish = state.client.register_script(_PUBLISH)
        self._pull = state.client.register_script(_PULL)
        state.register(self)

    def _changed(self, name: str) -> None:
        self._pending[name] = (self.state(name), self.retired().get(name, ""))
        self._state.wake()

    async def sync(self, state: RedisState) -> None:
        """Push local transitions, then apply newer ones from other replicas."""
        if state.generation != self._generation:
            # Redis was away and may have restarted empty (versions from 1 again): forget the versions
            # seen and publish again every breaker that is not closed here.
            self._generation = state.generation
            self._seen.clear()
            retired = self.retired()
            for name in self.known():
                st = self.state(name)
                if st is not BreakerState.CLOSED:
                    self._pending.setdefault(name, (st, retired.get(name, "")))
        for name, (st, why) in list(self._pending.items()):
            # HALF_OPEN is an open breaker whose wait is over; the others replay it as open.
            wire = BreakerState.OPEN if st is BreakerState.HALF_OPEN else st
            args = [name, str(wire), why]
            version = int(await state.script(self._publish, [self._key], args))
            self._seen[name] = max(self._seen.get(name, 0), version)
            if self._pending.get(name) == (st, why):  # not changed again while we were pushing
                del self._pending[name]
        now_s, flat = await state.script(self._pull, [self._key])
        now = float(now_s)
        for name, raw in zip(flat[::2], flat[1::2], strict=True):
            entry = json.loads(raw)
            version = int(entry["v"])
            # A transition made here and not yet pushed is newer than anything pulled; it wins.
            if version <= self._seen.get(name, 0) or name in self._pending:
                continue
            self._seen[name] = version
            self.apply(name, BreakerState(entry["s"]), max(0.0, now - float(entry["at"])), entry["why"])
