"""Budgets per tenant and per key, per day and per month (UTC), in USD.

Before a request goes out its worst-case cost is *reserved* in every window that applies; afterwards the
reservation is replaced by the real cost (settled). A request is admitted only if spent + reserved + its
worst case fits every window, and the check and the reservation happen with no await in between, so any
number of concurrent requests in this process can never push spend past a budget. Spend is seeded from
the ledger at start, so a restart does not reset it. Several replicas share one budget through Redis:
`gateway/shared_budgets.py` reserves atomically there behind `areserve`, the method admission awaits.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.database import Database


@dataclass(frozen=True, slots=True)
class Limit:
    tenant: str
    scope: str  # "tenant:acme" or "key:1a2b3c"
    period: str  # "day" or "month"
    usd: float


@dataclass(slots=True)
class _Window:
    period_key: str
    spent: float = 0.0
    reserved: float = 0.0


@dataclass(slots=True)
class Reservation:
    amount: float
    windows: list[tuple[str, str, str]] = field(default_factory=list)  # (scope, period, period_key)
    settled: bool = False
    id: str = ""  # names the reservation in a shared store
    shared: bool = False  # held in the shared store (else only in this process)


class BudgetExhausted(Exception):
    def __init__(self, limit: Limit, spent: float, reserved: float, needed: float) -> None:
        super().__init__(
            f"the {limit.period}ly budget of {limit.scope} (${limit.usd:.2f}) cannot cover this request: "
            f"spent ${spent:.4f}, in flight ${reserved:.4f}, this request up to ${needed:.4f}"
        )
        self.limit = limit


def period_key(period: str, now: float) -> str:
    day = dt.datetime.fromtimestamp(now, dt.UTC)
    return day.strftime("%Y-%m-%d") if period == "day" else day.strftime("%Y-%m")


class BudgetBook:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._limits: dict[tuple[str, str], tuple[str, float]] = {}

    def now(self) -> float:
        return self._clock()

    def _window(self, scope: str, period: str, now: float) -> _Window:
        key = period_key(period, now)
        w = self._windows.get((scope, period))
        if w is None or w.period_key != key:
            w = self._windows[(scope, period)] = _Window(key)
        return w

    def reserve(self, limits: Iterable[Limit], amount: float) -> Reservation:
        """Reserve `amount` in every window or in none; BudgetExhausted names the first that is full."""
        now = self._clock()
        limits = list(limits)
        for limit in limits:
            self._limits[(limit.scope, limit.period)] = (limit.tenant, limit.usd)
            w = self._window(limit.scope, limit.period, now)
            if w.spent + w.reserved + amount > limit.usd + 1e-12:
                raise BudgetExhausted(limit, w.spent, w.reserved, amount)
        res = Reservation(amount)
        for limit in limits:
            w = self._window(limit.scope, limit.period, now)
            w.reserved += amount
            res.windows.append((limit.scope, limit.period, w.period_key))
        return res

    async def areserve(self, limits: Iterable[Limit], amount: float) -> Reservation:
        """`reserve`, for callers on the event loop; a shared book reserves in Redis here."""
        return self.reserve(limits, amount)

    def charge(self, scopes: Iterable[tuple[str, str]], cost: float) -> None:
        """Record spend that had no reservation (a downgraded request); it still counts."""
        now = self._clock()
        for scope, period in scopes:
            self._window(scope, period, now).spent += cost

    def settle(self, res: Reservation, cost: float) -> None:
        if res.settled:
            return
        res.settled = True
        now = self._clock()
        for scope, period, key in res.windows:
            w = self._windows.get((scope, period))
            if w is not None and w.period_key == key:
                w.reserved = max(0.0, w.reserved - res.amount)
            self._window(scope, period, now).spent += cost

    def seed(self, scope: str, period: str, spent: float) -> None:
        self._window(scope, period, self._clock()).spent = spent

    def snapshot(self) -> list[tuple[str, str, str, float, float]]:
        """(tenant, scope, period, limit, remaining) for every window with a known limit."""
        now = self._clock()
        out = []
        for (scope, period), (tenant, usd) in sorted(self._limits.items()):
            w = self._window(scope, period, now)
            out.append((tenant, scope, period, usd, max(0.0, usd - w.spent - w.reserved)))
        return out


def seed_budgets(db: Database, book: BudgetBook) -> None:
    """Load this day's and month's spend per tenant and per key from the ledger (at start)."""
    now = book.now()
    for period in ("day", "month"):
        start = _period_start(period, now)
        for tenant, spent in db.query(
            "SELECT tenant, SUM(cost_usd) FROM requests WHERE ts >= ? GROUP BY tenant", (start,)
        ):
            book.seed(f"tenant:{tenant}", period, float(spent or 0.0))
        rows = db.query(
            "SELECT key_id, SUM(cost_usd) FROM requests WHERE ts >= ? AND key_id IS NOT NULL GROUP BY key_id",
            (start,),
        )
        for key_id, spent in rows:
            book.seed(f"key:{key_id}", period, float(spent or 0.0))


def _period_start(period: str, now: float) -> float:
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        day = day.replace(day=1)
    return day.timestamp()
