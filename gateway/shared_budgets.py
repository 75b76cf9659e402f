"""Budgets shared by replicas: reservations are checked and taken atomically in Redis.

`areserve` runs one Lua script that, for every window a request falls under, checks
spent + reserved + amount <= limit and only then adds the amount to every window: any number of
replicas and concurrent requests can never push spend past a budget (as long as a request costs no more
than its reserved worst case, as in one process). Each reservation is a lease in a sorted set; the
background loop renews the leases of this replica's open reservations, so a replica that dies gives its
reservations back within `lease_s` instead of blocking the budget for the rest of the day.

`settle` and `charge` stay synchronous: they queue their update and wake the loop, which pushes it within
milliseconds. Until then the reservation (the worst case) still counts, which errs on the safe side.

While Redis is down, replicas decide alone but never overspend together: each may use only its share,
(limit - spent - reserved as last seen) / live replicas, of each window. What was spent meanwhile is
pushed when Redis answers again, and reservations still open then are carried into Redis. That split is
safe when Redis is gone for every replica; if only some lose it (a partition), the others still reserve
in Redis and spend can exceed the budget by up to the cut-off replicas' shares.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable

from gateway.budgets import BudgetBook, BudgetExhausted, Limit, Reservation, period_key
from gateway.redis_state import Arg, RedisState, Unavailable

Window = tuple[str, str, str]  # (scope, period, period_key)

# How fresh the view of all replicas' use is, for metrics and for the share while Redis is down.
_REFRESH_S = 1.0
_TTL_S = {"day": 3 * 86400, "month": 40 * 86400}  # a window outlives its period, then Redis drops it

# Drop expired leases of one window (hash h, lease set z). Shared by the scripts below.
_PURGE = """
local function purge(h, z, now)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, rid in ipairs(expired) do
    redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(redis.call('HGET', h, 'r:' .. rid) or '0'))
    redis.call('HDEL', h, 'r:' .. rid)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
  if redis.call('ZCARD', z) == 0 then redis.call('HSET', h, 'reserved', '0') end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: (hash, leases) per window. ARGV: amount, id, lease_s, force, then (limit, ttl) per window.
# force = 1 skips the check: for reservations already taken (while Redis was down, or before it restarted).
# Returns {0, spent, reserved, ...} (values before this reservation) or {i, spent, reserved} for the
# first window i that cannot take it.
_RESERVE = (
    _PURGE
    + """
local amount = tonumber(ARGV[1])
local n = #KEYS / 2
local out = {0}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  purge(h, z, now)
  local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
  local reserved = math.max(0, tonumber(redis.call('HGET', h, 'reserved') or '0'))
  if ARGV[4] ~= '1' and spent + reserved + amount > tonumber(ARGV[3 + 2 * i]) + 1e-12 then
    return {i, tostring(spent), tostring(reserved)}
  end
  out[#out + 1] = tostring(spent)
  out[#out + 1] = tostring(reserved)
end
for i = 1, n do
  local h, z, ttl = KEYS[2 * i - 1], KEYS[2 * i], ARGV[4 + 2 * i]
  -- forced (carried) reservations may be there already: never count one twice
  if not redis.call('ZSCORE', z, ARGV[2]) then
    redis.call('HINCRBYFLOAT', h, 'reserved', ARGV[1])
    redis.call('HSET', h, 'r:' .. ARGV[2], ARGV[1])
  end
  redis.call('ZADD', z, now + tonumber(ARGV[3]), ARGV[2])
  redis.call('EXPIRE', h, ttl)
  redis.call('EXPIRE', z, ttl)
end
return out
"""
)

# KEYS: (hash, leases) per reserved window, then one hash per window the cost goes to.
# ARGV: id, number of reserved windows, cost, then one ttl per cost window. Release and spend in one step,
# so no other replica ever sees the reservation gone before the cost is there.
_SETTLE = (
    _PURGE
    + """
local n = tonumber(ARGV[2])
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('ZREM', z, ARGV[1]) == 1 then
    redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(redis.call('HGET', h, 'r:' .. ARGV[1]) or '0'))
    redis.call('HDEL', h, 'r:' .. ARGV[1])
  end
  purge(h, z, now)
end
for i = 2 * n + 1, #KEYS do
  if tonumber(ARGV[3]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'spent', ARGV[3]) end
  redis.call('EXPIRE', KEYS[i], ARGV[4 + i - 2 * n - 1])
end
return 1
"""
)

# KEYS[1] = leases; ARGV: lease_s, ids. Only leases still there are extended (XX).
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
return 1
"""

# KEYS[1] = hash; ARGV: spent from the ledger, ttl. The ledger may be per replica: keep the larger.
_SEED = """
if tonumber(redis.call('HGET', KEYS[1], 'spent') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class SharedBudgetBook(BudgetBook):
    """`BudgetBook` whose windows live in Redis (see module docstring); same methods, plus `sync`."""

    def __init__(
        self, state: RedisState, clock: Callable[[], float] = time.time, lease_s: float = 30.0
    ) -> None:
        super().__init__(clock)
        self._state = state
        self._lease_s = lease_s
        self._view: dict[tuple[str, str], tuple[str, float, float]] = {}  # last seen in Redis
        self._unshared: dict[Window, float] = {}  # used here and not yet visible in Redis
        self._held: dict[str, Reservation] = {}  # open reservations in Redis: their leases are renewed
        self._local: dict[str, Reservation] = {}  # open reservations taken while Redis was down
        self._settles: dict[str, tuple[Reservation, float, list[Window]]] = {}
        self._spends: dict[Window, float] = {}
        self._seeds: dict[Window, float] = {}
        self._renewed = self._refreshed = 0.0
        self._generation = 0
        self._recarry: set[str] = set()  # open reservations to write again after Redis came back
        client = state.client
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)
        self._seed = client.register_script(_SEED)
        state.register(self)

    def _keys(self, w: Window) -> tuple[str, str]:
        h = self._state.key("budget", *w)
        return h, h + ":leases"

    def _windows_now(self, pairs: Iterable[tuple[str, str]]) -> list[Window]:
        now = self._clock()
        return [(scope, period, period_key(period, now)) for scope, period in pairs]

    def _seen(self, w: Window) -> tuple[float, float]:
        pk, spent, reserved = self._view.get((w[0], w[1]), (w[2], 0.0, 0.0))
        return (spent, reserved) if pk == w[2] else (0.0, 0.0)

    def _note(self, w: Window, spent: float, reserved: float) -> None:
        self._view[(w[0], w[1])] = (w[2], spent, reserved)

    def _add(self, table: dict[Window, float], w: Window, amount: float) -> None:
        table[w] = max(0.0, table.get(w, 0.0) + amount)

    async def areserve(self, limits: Iterable[Limit], amount: float) -> Reservation:
        """Check and reserve in Redis, atomically for every window; decide locally if Redis is down."""
        limits = list(limits)
        if not limits or not self._state.up:
            return self.reserve(limits, amount)
        for limit in limits:
            self._limits[(limit.scope, limit.period)] = (limit.tenant, limit.usd)
        windows = self._windows_now((lim.scope, lim.period) for lim in limits)
        res = Reservation(amount, windows, id=uuid.uuid4().hex, shared=True)
        keys = [k for w in windows for k in self._keys(w)]
        args: list[Arg] = [repr(amount), res.id, self._lease_s, 0]
        for lim in limits:
            args += [repr(lim.usd), _TTL_S[lim.period]]
        try:
            reply = await self._state.script(self._reserve, keys, args)
        except Unavailable:
            return self.reserve(limits, amount)
        except asyncio.CancelledError:
            # The script may have run before the cancellation reached us: give back whatever it took.
            self._queue_settle(res, 0.0, [])
            raise
        failed = int(reply[0])
        if failed:
            spent, reserved = float(reply[1]), float(reply[2])
            self._note(windows[failed - 1], spent, reserved)
            raise BudgetExhausted(limits[failed - 1], spent, reserved, amount)
        for i, w in enumerate(windows):
            self._note(w, float(reply[1 + 2 * i]), float(reply[2 + 2 * i]) + amount)
        self._held[res.id] = res
        return res

    def reserve(self, limits: Iterable[Limit], amount: float) -> Reservation:
        """The local decision (Redis down): this replica's share of what was left when last seen."""
        limits = list(limits)
        windows = self._windows_now((lim.scope, lim.period) for lim in limits)
        share = 1.0 / max(1, self._state.replicas)
        for limit, w in zip(limits, windows, strict=True):
            self._limits[(limit.scope, limit.period)] = (limit.tenant, limit.usd)
            spent, reserved = self._seen(w)
            mine = self._unshared.get(w, 0.0)
            if mine + amount > (limit.usd - spent - reserved) * share + 1e-12:
                raise BudgetExhausted(limit, spent + mine, reserved, amount)
        res = Reservation(amount, windows, id=uuid.uuid4().hex)
        for w in windows:
            self._add(self._unshared, w, amount)
        self._local[res.id] = res
        return res

    def settle(self, res: Reservation, cost: float) -> None:
        if res.settled:
            return
        res.settled = True
        targets = self._windows_now((scope, period) for scope, period, _ in res.windows)
        if res.shared:
            self._queue_settle(res, cost, targets)
            return
        self._local.pop(res.id, None)
        for w in res.windows:
            self._add(self._unshared, w, -res.amount)
        self.charge([(scope, period) for scope, period, _ in res.windows], cost)

    def _queue_settle(self, res: Reservation, cost: float, targets: list[Window]) -> None:
        self._held.pop(res.id, None)
        self._settles[res.id] = (res, cost, targets)
        self._state.wake()

    def charge(self, scopes: Iterable[tuple[str, str]], cost: float) -> None:
        """Spend without a reservation (downgraded requests, and settled local reservations)."""
        if not cost:
            return
        for w in self._windows_now(scopes):
            self._add(self._spends, w, cost)
            self._add(self._unshared, w, cost)
        self._state.wake()

    def seed(self, scope: str, period: str, spent: float) -> None:
        (w,) = self._windows_now([(scope, period)])
        seen_spent, reserved = self._seen(w)
        self._note(w, max(seen_spent, spent), reserved)
        self._seeds[w] = max(self._seeds.get(w, 0.0), spent)

    def snapshot(self) -> list[tuple[str, str, str, float, float]]:
        out = []
        for (scope, period), (tenant, usd) in sorted(self._limits.items()):
            (w,) = self._windows_now([(scope, period)])
            spent, reserved = self._seen(w)
            used = spent + reserved + self._unshared.get(w, 0.0)
            out.append((tenant, scope, period, usd, max(0.0, usd - used)))
        return out

    async def sync(self, state: RedisState) -> None:
        """Push seeds, settlements, spends and open local reservations; renew leases; refresh the view."""
        if state.generation != self._generation:
            # Redis was away and may have restarted empty: what we last saw spent is a floor for the
            # windows, and our open reservations must count there again (both idempotent).
            self._generation = state.generation
            for (scope, period), (pk, spent, _) in self._view.items():
                w = (scope, period, pk)
                self._seeds[w] = max(self._seeds.get(w, 0.0), spent)
            self._recarry = set(self._held)
        for w, spent in list(self._seeds.items()):
            h, _ = self._keys(w)
            await state.script(self._seed, [h], [repr(spent), _TTL_S[w[1]]])
            del self._seeds[w]
        for rid, (res, cost, targets) in list(self._settles.items()):
            keys = [k for w in res.windows for k in self._keys(w)] + [self._keys(w)[0] for w in targets]
            args: list[Arg] = [rid, len(res.windows), repr(cost), *(_TTL_S[w[1]] for w in targets)]
            await state.script(self._settle, keys, args)
            del self._settles[rid]
        await self._push_spends(state)
        await self._carry_local(state)
        for rid in list(self._recarry):
            held = self._held.get(rid)
            if held is not None:
                await self._force(state, held)
            self._recarry.discard(rid)
        if time.monotonic() - self._renewed >= self._lease_s / 3:
            await self._renew_leases(state)
        if time.monotonic() - self._refreshed >= _REFRESH_S:
            await self._refresh(state)

    async def _push_spends(self, state: RedisState) -> None:
        for w, cost in list(self._spends.items()):
            h, _ = self._keys(w)
            # A settlement of no reservation: only the spend.
            args: list[Arg] = ["-", 0, repr(cost), _TTL_S[w[1]]]
            await state.script(self._settle, [h], args)
            self._add(self._spends, w, -cost)
            if not self._spends.get(w):
                self._spends.pop(w, None)
            self._add(self._unshared, w, -cost)
            spent, reserved = self._seen(w)
            self._note(w, spent + cost, reserved)

    async def _carry_local(self, state: RedisState) -> None:
        """Reservations taken while Redis was down and still open now count in Redis too (forced)."""
        for rid, res in list(self._local.items()):
            await self._force(state, res)
            self._local.pop(rid, None)
            for w in res.windows:
                self._add(self._unshared, w, -res.amount)
            res.shared = True
            if res.settled:  # settled while we were pushing: its cost is queued; give the lease back
                self._queue_settle(res, 0.0, [])
            else:
                self._held[rid] = res

    async def _force(self, state: RedisState, res: Reservation) -> None:
        keys = [k for w in res.windows for k in self._keys(w)]
        args: list[Arg] = [repr(res.amount), res.id, self._lease_s, 1]
        for w in res.windows:
            args += [0, _TTL_S[w[1]]]
        await state.script(self._reserve, keys, args)

    async def _renew_leases(self, state: RedisState) -> None:
        self._renewed = time.monotonic()
        by_window: dict[Window, list[str]] = {}
        for rid, res in list(self._held.items()):
            for w in res.windows:
                by_window.setdefault(w, []).append(rid)
        for w, ids in by_window.items():
            _, z = self._keys(w)
            for start in range(0, len(ids), 500):  # bounded script arguments
                chunk = ids[start : start + 500]
                await state.script(self._renew, [z], [self._lease_s, *chunk])

    async def _refresh(self, state: RedisState) -> None:
        self._refreshed = time.monotonic()
        windows = self._windows_now(self._limits)
        if not windows:
            return

        async def read() -> list[list[str | None]]:
            async with state.client.pipeline(transaction=False) as pipe:
                for w in windows:
                    pipe.hmget(self._keys(w)[0], ["spent", "reserved"])
                return list(await pipe.execute())

        for w, (spent, reserved) in zip(windows, await state.call(read), strict=True):
            self._note(w, float(spent or 0.0), max(0.0, float(reserved or 0.0)))
