"""Requests-per-minute and tokens-per-minute limits, over a sliding 60-second window per scope.

Decisions are local and synchronous. Replicas share their windows through `gateway/shared_ratelimit.py`,
which feeds what the others counted into `_others`; that view lags by up to a sync interval.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(slots=True)
class Entry:
    at: float
    tokens: int


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: float, kind: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, deque[Entry]] = {}

    def admit(self, scope: str, rpm: int | None, tpm: int | None, tokens: int) -> Entry | None:
        """Count one request of `tokens` (an estimate, corrected later with `Entry.tokens`)."""
        if rpm is None and tpm is None:
            return None
        now = self._clock()
        window = self._windows.setdefault(scope, deque())
        while window and now - window[0].at >= WINDOW_S:
            window.popleft()
        if not window:
            self._windows.pop(scope, None)  # idle scopes must not accumulate
            window = self._windows.setdefault(scope, deque())
        wait = WINDOW_S - (now - window[0].at) if window else 0.0
        others, other_tokens, other_wait = self._others(scope)
        if other_wait is not None:
            wait = min(wait, other_wait) if window else other_wait
        if rpm is not None and len(window) + others >= rpm:
            raise RateLimited(f"{scope}: more than {rpm} requests per minute", wait, "requests")
        used = sum(e.tokens for e in window) + other_tokens
        if tpm is not None and (window or others) and used + tokens > tpm:
            raise RateLimited(f"{scope}: more than {tpm} tokens per minute", wait, "tokens")
        entry = Entry(now, tokens)
        window.append(entry)
        return entry

    def _others(self, scope: str) -> tuple[int, int, float | None]:
        """Requests and tokens other replicas counted in `scope`'s window, and when their oldest leaves it."""
        return 0, 0, None
