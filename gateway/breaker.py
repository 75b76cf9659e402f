"""Circuit breakers per deployment (closed -> open -> half-open) and the set of retired deployments.

A deployment opens when, within `window_s`, at least `min_requests` calls were made and the share that
failed reaches `failure_ratio`. After `open_s` one probe is let through (half-open): success closes the
breaker, failure opens it again. Retired deployments (404 model_not_found, 410) stay out of routing until
an operator restores them. State lives in this process; `gateway/shared_breakers.py` shares it between
replicas through Redis behind the same methods, using the `_changed` hook and `apply`.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.policy import BreakerSettings

_MAX_EVENTS = 10_000  # per deployment; a window never needs more to decide, and memory stays bounded


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    RETIRED = "retired"


@dataclass(slots=True)
class _Breaker:
    events: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=_MAX_EVENTS))
    opened_at: float | None = None
    probing: bool = False
    probe_at: float = 0.0


class Breakers:
    def __init__(
        self, settings: Callable[[], BreakerSettings], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}
        self._retired: dict[str, str] = {}

    def _get(self, name: str) -> _Breaker:
        b = self._breakers.get(name)
        if b is None:
            b = self._breakers[name] = _Breaker()
        return b

    def state(self, name: str) -> BreakerState:
        if name in self._retired:
            return BreakerState.RETIRED
        b = self._breakers.get(name)
        if b is None or b.opened_at is None:
            return BreakerState.CLOSED
        if b.probing or self._clock() - b.opened_at >= self._settings().open_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, name: str) -> bool:
        """May a call go to `name` now? In half-open state exactly one probe is allowed at a time."""
        b = self._breakers.get(name)
        if b is None or b.opened_at is None:
            return name not in self._retired
        now, open_s = self._clock(), self._settings().open_s
        # A probe whose outcome never came back (cancelled) must not block the deployment for ever.
        if now - b.opened_at < open_s or (b.probing and now - b.probe_at < open_s):
            return False
        b.probing, b.probe_at = True, now
        return True

    def record(self, name: str, ok: bool) -> None:
        b = self._get(name)
        now = self._clock()
        if b.opened_at is not None:
            if b.probing:
                b.probing = False
                if ok:
                    b.opened_at = None
                    b.events.clear()
                else:
                    b.opened_at = now
                self._changed(name)
            return
        cfg = self._settings()
        b.events.append((now, ok))
        while b.events and now - b.events[0][0] > cfg.window_s:
            b.events.popleft()
        if not ok and len(b.events) >= cfg.min_requests:
            failures = sum(1 for _, good in b.events if not good)
            if failures / len(b.events) >= cfg.failure_ratio:
                b.opened_at = now
                self._changed(name)

    def trip(self, name: str) -> None:
        """Open at once (e.g. the provider refused the gateway's key)."""
        b = self._get(name)
        b.opened_at, b.probing = self._clock(), False
        self._changed(name)

    def retire(self, name: str, reason: str) -> None:
        self._retired[name] = reason
        self._changed(name)

    def restore(self, name: str) -> bool:
        self._breakers.pop(name, None)
        was_retired = self._retired.pop(name, None) is not None
        self._changed(name)
        return was_retired

    def retired(self) -> dict[str, str]:
        return dict(self._retired)

    def known(self) -> list[str]:
        return sorted(set(self._breakers) | set(self._retired))

    def _changed(self, name: str) -> None:
        """Called after every transition of `name` made here (not by `apply`); a shared store pushes it."""

    def apply(self, name: str, state: BreakerState, age_s: float = 0.0, reason: str = "") -> None:
        """Take a transition another replica made: OPEN `age_s` ago, CLOSED (reset) or RETIRED."""
        if state is BreakerState.RETIRED:
            self._retired[name] = reason
            return
        self._retired.pop(name, None)
        b = self._get(name)
        b.events.clear()
        b.probing = False
        b.opened_at = self._clock() - age_s if state is BreakerState.OPEN else None
