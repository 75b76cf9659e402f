"""Walk a routing plan: skip open breakers, call the provider, retry what is worth retrying, fall back.

| kind             | retry same deployment                    | next candidate           | breaker  |
|------------------|------------------------------------------|--------------------------|----------|
| rate_limited     | after Retry-After if <= max_retry_after  | yes                      | counts   |
| transient        | yes, jittered exponential backoff        | yes                      | counts   |
| timeout          | yes, bounded                             | yes                      | counts   |
| retired          | no                                       | yes                      | retired  |
| context_too_long | no                                       | only to a larger context | no       |
| content_policy   | no                                       | per policy (stop, next)  | no       |
| bad_request      | no                                       | no                       | no       |
| auth             | no                                       | yes                      | provider tripped |

Everything happens inside the request's deadline. Fallback can only walk the plan routing gave it; as a
second lock it re-checks the plan's hard requirements before each call and counts a refusal as a bug.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from gateway.breaker import Breakers
from gateway.errors import AllAttemptsFailed, ErrorKind, NoEligibleDeployment, UpstreamError
from gateway.metrics import Metrics
from gateway.policy import Deployment, FallbackSettings, Policy
from gateway.routing import RoutingPlan, violation
from providers.base import CallContext, Provider

T = TypeVar("T")

RETRYABLE = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT, ErrorKind.TIMEOUT})
COUNTS_FOR_BREAKER = RETRYABLE


@dataclass(slots=True)
class Attempt:
    deployment: str
    ok: bool
    kind: ErrorKind | None
    seconds: float


@dataclass(slots=True)
class Outcome(Generic[T]):
    value: T
    deployment: Deployment
    attempts: list[Attempt]
    upstream_seconds: float
    waited_seconds: float
    fallbacks: int


@dataclass(slots=True)
class _Walk:
    attempts: list[Attempt] = field(default_factory=list)
    upstream_seconds: float = 0.0
    waited_seconds: float = 0.0
    tried: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pending_fallback: tuple[str, str] | None = None


Call = Callable[[Provider, Deployment, CallContext], Awaitable[T]]


class FallbackRunner:
    def __init__(
        self, breakers: Breakers, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.breakers = breakers
        self.metrics = metrics
        self.clock = clock

    async def run(
        self,
        plan: RoutingPlan,
        policy: Policy,
        providers: Mapping[str, Provider],
        call: Call[T],
        *,
        request_id: str,
    ) -> Outcome[T]:
        settings = policy.fallback
        deadline = self.clock() + settings.deadline_ms / 1000.0
        walk = _Walk()
        last: UpstreamError | None = None
        context_floor: int | None = None
        for dep in plan.order:
            if self._forbidden(dep, plan):
                continue
            if context_floor is not None and (dep.context_window or 0) <= context_floor:
                walk.skipped.append(f"{dep.name}: context not larger than {context_floor}")
                continue
            if not self.breakers.allow(dep.name):
                walk.skipped.append(f"{dep.name}: circuit open")
                continue
            if self.clock() >= deadline:
                break
            self._note_fallback_to(plan.route, dep.name, walk)
            walk.tried.append(dep.name)
            try:
                value = await self._attempts(
                    dep,
                    policy,
                    providers[dep.provider],
                    call,
                    request_id=request_id,
                    deadline=deadline,
                    walk=walk,
                )
            except UpstreamError as exc:
                last = exc
                self._after_failure(dep, policy, exc)
                if exc.kind is ErrorKind.BAD_REQUEST or (
                    exc.kind is ErrorKind.CONTENT_POLICY and settings.on_content_policy == "stop"
                ):
                    raise
                if exc.kind is ErrorKind.CONTEXT_TOO_LONG:
                    context_floor = dep.context_window or 0
                walk.pending_fallback = (dep.name, exc.kind.value)
                continue
            fallbacks = len(walk.tried) - 1
            return Outcome(value, dep, walk.attempts, walk.upstream_seconds, walk.waited_seconds, fallbacks)
        if walk.pending_fallback is not None:
            self.metrics.fallback(plan.route, walk.pending_fallback[0], "none", walk.pending_fallback[1])
        if last is not None:
            raise AllAttemptsFailed(last, len(walk.attempts), walk.tried)
        raise NoEligibleDeployment(
            f"every candidate of route {plan.route!r} is unavailable right now: {'; '.join(walk.skipped)}",
            headers={"retry-after": str(max(1, round(policy.fallback.breaker.open_s)))},
        )

    def _forbidden(self, dep: Deployment, plan: RoutingPlan) -> bool:
        """The second lock: a deployment that breaks a hard requirement is never called."""
        for req in plan.hard:
            if violation(dep, req, plan.est_cost.get(dep.name, 0.0)) is not None:
                self.metrics.privacy_block(plan.route, dep.name)
                return True
        return False

    def _note_fallback_to(self, route: str, to: str, walk: _Walk) -> None:
        if walk.pending_fallback is not None:
            self.metrics.fallback(route, walk.pending_fallback[0], to, walk.pending_fallback[1])
            walk.pending_fallback = None

    async def _attempts(
        self,
        dep: Deployment,
        policy: Policy,
        provider: Provider,
        call: Call[T],
        *,
        request_id: str,
        deadline: float,
        walk: _Walk,
    ) -> T:
        settings = policy.fallback
        spec = policy.providers[dep.provider]

        async def attempt_once() -> T:
            timeout = min(spec.timeout_s, deadline - self.clock())
            if timeout <= 0:
                raise UpstreamError(ErrorKind.TIMEOUT, "the request's deadline passed")
            return await self._one_call(dep, provider, call, CallContext(request_id, timeout), walk)

        # The common case, one successful call, builds no retry machinery at all (measured: ~0.3 ms saved).
        try:
            return await attempt_once()
        except UpstreamError as exc:
            if exc.kind not in RETRYABLE or settings.retries == 0:
                raise
            first_failure: list[UpstreamError] = [exc]
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, UpstreamError) and e.kind in RETRYABLE),
            wait=_Backoff(settings),
            stop=stop_after_attempt(settings.retries + 1) | _StopAtDeadline(settings, deadline, self.clock),
            reraise=True,
            sleep=asyncio.sleep,
            before_sleep=lambda state: _add_wait(walk, state),
        )
        async for attempt in retrying:
            with attempt:
                if first_failure:  # tenacity's attempt 1 replays the failure above, so its rules see it
                    raise first_failure.pop()
                return await attempt_once()
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def _one_call(
        self, dep: Deployment, provider: Provider, call: Call[T], ctx: CallContext, walk: _Walk
    ) -> T:
        started = self.clock()
        try:
            # Providers enforce their own timeouts; this outer bound catches one that does not.
            async with asyncio.timeout(ctx.timeout_s + 0.5):
                value = await call(provider, dep, ctx)
        except TimeoutError:
            error = UpstreamError(ErrorKind.TIMEOUT, f"no answer from {dep.name} within {ctx.timeout_s:.1f}s")
            self._record(dep, walk, started, error)
            raise error from None
        except UpstreamError as exc:
            self._record(dep, walk, started, exc)
            raise
        self._record(dep, walk, started, None)
        return value

    def _record(self, dep: Deployment, walk: _Walk, started: float, error: UpstreamError | None) -> None:
        seconds = self.clock() - started
        walk.upstream_seconds += seconds
        walk.attempts.append(Attempt(dep.name, error is None, error.kind if error else None, seconds))
        if error is None:
            self.breakers.record(dep.name, True)
            return
        self.metrics.upstream_error(dep.name, error.kind.value)
        if error.kind in COUNTS_FOR_BREAKER:
            self.breakers.record(dep.name, False)

    def _after_failure(self, dep: Deployment, policy: Policy, exc: UpstreamError) -> None:
        if exc.kind is ErrorKind.RETIRED:
            self.breakers.retire(dep.name, f"upstream said the model is gone ({exc.upstream_status})")
        elif exc.kind is ErrorKind.AUTH:
            for other in policy.deployments.values():
                if other.provider == dep.provider:
                    self.breakers.trip(other.name)


def _add_wait(walk: _Walk, state: RetryCallState) -> None:
    walk.waited_seconds += state.upcoming_sleep or 0.0


class _Backoff:
    """Jittered exponential backoff; a Retry-After from the upstream is honoured as a floor."""

    def __init__(self, settings: FallbackSettings) -> None:
        low, high = settings.backoff_ms
        self._jitter = wait_random_exponential(multiplier=low / 1000.0, max=high / 1000.0)

    def __call__(self, state: RetryCallState) -> float:
        delay = self._jitter(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, UpstreamError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return float(delay)


class _StopAtDeadline(stop_base):
    """Stop retrying when the next wait passes the deadline or exceeds the longest Retry-After we accept."""

    def __init__(self, settings: FallbackSettings, deadline: float, clock: Callable[[], float]) -> None:
        self._max_retry_after = settings.max_retry_after_ms / 1000.0
        self._deadline = deadline
        self._clock = clock

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, UpstreamError) and (exc.retry_after or 0.0) > self._max_retry_after:
            return True
        return self._clock() + (state.upcoming_sleep or 0.0) >= self._deadline
