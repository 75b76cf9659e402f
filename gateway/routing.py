"""The routing engine: pure, no I/O. (route, signals, policy, health) -> RoutingPlan, or PolicyDenied.

Order of work, each step recorded in the plan so `gateway explain` can show it:
1. the policy-wide privacy floor (confidential data, PII) removes what it forbids;
2. unhealthy deployments leave: retired at run time, or past their deprecation date;
3. the request's own ceilings: `x-max-cost-usd`, numeric `x-quality`;
4. the route's rules in order: `deny` refuses, `require` removes, `prefer` reorders;
5. the route's strategy orders what is left (a rule's `prefer` wins over it).

Example::

    plan = plan_route(policy.routes["chat"], signals, policy, health={}, today=date.today())
    [d.name for d in plan.order]
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.errors import NoEligibleDeployment, PolicyDenied
from gateway.policy import Classification, Condition, Deployment, Policy, Requirement, Route, Strategy
from gateway.pricing import estimated_cost
from gateway.signals import Signals


@dataclass(slots=True)
class Removal:
    deployment: str
    reason: str


@dataclass(slots=True)
class RoutingPlan:
    route: str
    order: list[Deployment]
    removed: list[Removal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    est_cost: dict[str, float] = field(default_factory=dict)
    hard: list[Requirement] = field(default_factory=list)

    def explain(self) -> dict[str, object]:
        return {
            "route": self.route,
            "order": [d.name for d in self.order],
            "removed": [{"deployment": r.deployment, "reason": r.reason} for r in self.removed],
            "notes": list(self.notes),
            "estimated_cost_usd": {k: round(v, 8) for k, v in self.est_cost.items()},
        }


@functools.lru_cache(maxsize=4096)
def _listed(values: frozenset[str]) -> str:
    """`str(sorted(values))`, cached: a plan explains every removal, and sorting enums for each
    removed candidate was most of routing's time on large routes (bench/routing.py)."""
    return str(sorted(values))


def violation(dep: Deployment, req: Requirement, est_cost: float) -> str | None:
    """Why `dep` breaks `req`, or None when it satisfies it."""
    if req.data_location is not None and dep.data.location not in req.data_location:
        return f"data location {dep.data.location} not in {_listed(req.data_location)}"
    if req.openness is not None and dep.openness is not req.openness:
        return f"openness {dep.openness} is not {req.openness}"
    if req.no_retention and dep.data.retains:
        return "the provider retains data"
    if req.regions is not None and dep.data.region not in req.regions:
        return f"region {dep.data.region} not in {_listed(req.regions)}"
    if req.min_quality is not None and dep.quality < req.min_quality:
        return f"quality {dep.quality} below {req.min_quality}"
    if req.max_cost_usd is not None and est_cost > req.max_cost_usd:
        return f"estimated cost ${est_cost:.6f} above ${req.max_cost_usd}"
    if req.deployments is not None and dep.name not in req.deployments:
        return f"not one of {_listed(req.deployments)}"
    return None


def privacy_floor(policy: Policy, signals: Signals) -> list[Requirement]:
    floor: list[Requirement] = []
    if signals.classification is Classification.CONFIDENTIAL:
        floor.append(policy.privacy.confidential)
    if signals.pii and policy.privacy.pii is not None:
        floor.append(policy.privacy.pii)
    return floor


def _matches(w: Condition, signals: Signals) -> bool:
    if w.classification is not None and signals.classification not in w.classification:
        return False
    if w.pii is not None and bool(signals.pii) is not w.pii:
        return False
    if w.quality is not None and signals.quality not in w.quality:
        return False
    if w.tenant is not None and signals.tenant not in w.tenant:
        return False
    return not (w.modality is not None and signals.modality not in w.modality)


def _sort(order: list[Deployment], strategy: Strategy, cost: Mapping[str, float]) -> list[Deployment]:
    if strategy is Strategy.CHEAPEST:
        return sorted(order, key=lambda d: cost[d.name])
    if strategy is Strategy.BEST_QUALITY:
        return sorted(order, key=lambda d: -d.quality)
    if strategy is Strategy.FASTEST:
        return sorted(order, key=lambda d: d.latency_ms if d.latency_ms is not None else float("inf"))
    return order


def plan_route(
    route: Route,
    signals: Signals,
    policy: Policy,
    *,
    health: Mapping[str, str],
    today: dt.date,
) -> RoutingPlan:
    """Decide the ordered deployments to try. Raises PolicyDenied or NoEligibleDeployment."""
    plan = RoutingPlan(route=route.name, order=[], hard=privacy_floor(policy, signals))
    for name in route.candidates:
        dep = policy.deployments[name]
        plan.est_cost[name] = estimated_cost(dep, policy.providers[dep.provider], signals.estimate)
    alive = _healthy_and_allowed(route, signals, policy, plan, health=health, today=today)
    alive, strategy, preferred = _apply_rules(route, signals, plan, alive)
    order = _sort(alive, strategy, plan.est_cost)
    for label, want in preferred:  # later prefers are applied last, so they dominate
        first = [d for d in order if violation(d, want, plan.est_cost[d.name]) is None]
        # By identity: `d not in first` compared pydantic models field by field, quadratic in candidates.
        chosen = {id(d) for d in first}
        order = first + [d for d in order if id(d) not in chosen]
        if first:
            plan.notes.append(f"{label}: prefers {', '.join(d.name for d in first)}")
    plan.order = order
    if not order:
        detail = "; ".join(f"{r.deployment}: {r.reason}" for r in plan.removed)
        message = f"no deployment of route {route.name!r} may serve this request ({detail})"
        if any(r.deployment in health or r.reason.startswith("retired") for r in plan.removed):
            raise NoEligibleDeployment(message)
        raise PolicyDenied(message, code="no_allowed_deployment")
    return plan


def _healthy_and_allowed(
    route: Route,
    signals: Signals,
    policy: Policy,
    plan: RoutingPlan,
    *,
    health: Mapping[str, str],
    today: dt.date,
) -> list[Deployment]:
    """Steps 1-3: the privacy floor, health and deprecation, the request's own ceilings."""
    # Most requests set neither header; the headers were validated when signals were extracted, so
    # the Requirement is built without running pydantic validation again.
    limits = (
        [Requirement.model_construct(max_cost_usd=signals.max_cost_usd, min_quality=signals.min_quality)]
        if signals.max_cost_usd is not None or signals.min_quality is not None
        else []
    )
    alive: list[Deployment] = []
    for name in route.candidates:
        dep = policy.deployments[name]
        cost = plan.est_cost[name]
        reason = (
            _unhealthy(dep, health, today)
            or _first_violation(dep, plan.hard, cost, "privacy floor")
            or _first_violation(dep, limits, cost, "request header")
        )
        if reason:
            plan.removed.append(Removal(name, reason))
        else:
            alive.append(dep)
    return alive


def _apply_rules(
    route: Route, signals: Signals, plan: RoutingPlan, alive: list[Deployment]
) -> tuple[list[Deployment], Strategy, list[tuple[str, Requirement]]]:
    """Step 4: the route's rules in order. Returns what is left, the strategy, and the preferences."""
    strategy, preferred = route.strategy, []
    for i, rule in enumerate(route.rules):
        if not _matches(rule.when, signals):
            continue
        label = rule.label(i)
        if rule.deny is not None:
            raise PolicyDenied(f"route {route.name!r} refused this request ({label}): {rule.deny}")
        if rule.require is not None:
            plan.hard.append(rule.require)
            kept = []
            for dep in alive:
                why = violation(dep, rule.require, plan.est_cost[dep.name])
                if why:
                    plan.removed.append(Removal(dep.name, f"{label} requires: {why}"))
                else:
                    kept.append(dep)
            alive = kept
        if isinstance(rule.prefer, Strategy):
            strategy = rule.prefer
            plan.notes.append(f"{label}: order by {rule.prefer}")
        elif rule.prefer is not None:
            preferred.append((label, rule.prefer))
    return alive, strategy, preferred


def _unhealthy(dep: Deployment, health: Mapping[str, str], today: dt.date) -> str | None:
    if dep.name in health:
        return health[dep.name]
    if dep.deprecation_date is not None and dep.deprecation_date <= today:
        return f"retired: past its deprecation date {dep.deprecation_date.isoformat()}"
    return None


def _first_violation(dep: Deployment, reqs: list[Requirement], est_cost: float, source: str) -> str | None:
    for req in reqs:
        why = violation(dep, req, est_cost)
        if why:
            return f"{source}: {why}"
    return None
