"""Admission: may this caller send this request now? Rate limits, then budget reservation.

Runs after routing (the plan says what the request may cost at worst) and before any upstream call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.budgets import BudgetBook, BudgetExhausted, Limit, Reservation
from gateway.errors import GatewayError
from gateway.keys import ApiKey
from gateway.metrics import Metrics
from gateway.policy import DataLocation, Openness, Policy, Requirement
from gateway.ratelimit import Entry, RateLimited, RateLimiter
from gateway.routing import RoutingPlan, cap_output
from gateway.signals import UsageEstimate

DOWNGRADE = Requirement(
    data_location=frozenset({DataLocation.LOCAL, DataLocation.ON_PREM}), openness=Openness.OPEN
)


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class RateLimitExceeded(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


@dataclass(slots=True)
class Ticket:
    """What admission took; `settle` gives back the reservation and records the real cost and tokens."""

    book: BudgetBook
    reservation: Reservation | None = None
    charge_scopes: list[tuple[str, str]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    downgraded: bool = False

    def settle(self, cost: float, tokens: int) -> None:
        for entry in self.entries:
            entry.tokens = tokens
        if self.reservation is not None:
            self.book.settle(self.reservation, cost)
            self.reservation = None
        elif self.charge_scopes and cost:
            self.book.charge(self.charge_scopes, cost)
            self.charge_scopes = []


def budget_limits(policy: Policy, tenant: str, key: ApiKey | None) -> list[Limit]:
    limits: list[Limit] = []
    spec = policy.tenants.get(tenant)
    if spec is not None:
        if spec.budget.daily_usd is not None:
            limits.append(Limit(tenant, f"tenant:{tenant}", "day", spec.budget.daily_usd))
        if spec.budget.monthly_usd is not None:
            limits.append(Limit(tenant, f"tenant:{tenant}", "month", spec.budget.monthly_usd))
    if key is not None:
        if key.daily_usd is not None:
            limits.append(Limit(tenant, f"key:{key.id}", "day", key.daily_usd))
        if key.monthly_usd is not None:
            limits.append(Limit(tenant, f"key:{key.id}", "month", key.monthly_usd))
    return limits


class Admission:
    def __init__(self, budgets: BudgetBook, limiter: RateLimiter, metrics: Metrics) -> None:
        self.budgets = budgets
        self.limiter = limiter
        self.metrics = metrics

    async def admit(
        self, policy: Policy, tenant: str, key: ApiKey | None, plan: RoutingPlan, estimate: UsageEstimate
    ) -> Ticket:
        """Raise RateLimitExceeded or QuotaExceeded, or return a ticket (possibly for a downgraded plan)."""
        tokens = estimate.prompt_tokens + estimate.output_tokens
        ticket = Ticket(self.budgets)
        self._rate_limits(policy, tenant, key, tokens, ticket)
        limits = budget_limits(policy, tenant, key)
        if not limits:
            return ticket
        worst = max(plan.est_cost.get(d.name, 0.0) for d in plan.order)
        try:
            ticket.reservation = await self.budgets.areserve(limits, worst)
        except BudgetExhausted as exc:
            self.metrics.budget_rejections.labels(tenant, exc.limit.period).inc()
            if policy.budgets.on_exhausted == "refuse" or not _downgrade(plan):
                raise QuotaExceeded(str(exc)) from None
            ticket.downgraded = True
            ticket.charge_scopes = [(lim.scope, lim.period) for lim in limits]
        else:
            # The reservation is this request's ceiling: an answer longer than the estimate assumed must
            # not cost more than was set aside, or concurrent requests could overspend the budget.
            cap_output(plan, policy, estimate, worst)
        return ticket

    def _rate_limits(
        self, policy: Policy, tenant: str, key: ApiKey | None, tokens: int, ticket: Ticket
    ) -> None:
        spec = policy.tenants.get(tenant)
        checks = []
        if key is not None:
            checks.append((f"key:{key.id}", key.rpm, key.tpm))
        if spec is not None:
            checks.append((f"tenant:{tenant}", spec.rate_limits.rpm, spec.rate_limits.tpm))
        for scope, rpm, tpm in checks:
            try:
                entry = self.limiter.admit(scope, rpm, tpm, tokens)
            except RateLimited as exc:
                self.metrics.rate_limit_rejections.labels(tenant, exc.kind).inc()
                raise RateLimitExceeded(
                    str(exc), headers={"retry-after": str(max(1, round(exc.retry_after)))}
                ) from None
            if entry is not None:
                ticket.entries.append(entry)


def _downgrade(plan: RoutingPlan) -> bool:
    """Keep only open, local deployments in the plan; False when none is left."""
    kept = [
        d for d in plan.order if d.openness is Openness.OPEN and d.data.location is not DataLocation.VENDOR
    ]
    if not kept:
        return False
    plan.order = kept
    plan.hard.append(DOWNGRADE)
    plan.notes.append("budget exhausted: downgraded to open, local deployments")
    return True
