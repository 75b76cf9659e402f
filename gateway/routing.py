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
from gateway.policy import (
    Classification,
    Condition,
    Deployment,
    Policy,
    ProviderSpec,
    Requirement,
    Route,
    Rule,
    Strategy,
)
from gateway.pricing import DEFAULT_DEVICE_SECONDS, IMAGE_TOKENS_PER_MEGAPIXEL, output_token_cap
from gateway.signals import Signals, UsageEstimate


@dataclass(slots=True, frozen=True)
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
    # Under a cost ceiling: the most output tokens each deployment priced per token may produce.
    output_caps: dict[str, int] = field(default_factory=dict)

    def explain(self) -> dict[str, object]:
        return {
            "route": self.route,
            "order": [d.name for d in self.order],
            "removed": [{"deployment": r.deployment, "reason": r.reason} for r in self.removed],
            "notes": list(self.notes),
            "estimated_cost_usd": {k: round(v, 8) for k, v in self.est_cost.items()},
            "output_token_caps": dict(self.output_caps),
        }


@functools.lru_cache(maxsize=4096)
def _listed(values: frozenset[str]) -> str:
    """`str(sorted(values))`, cached: a plan explains every removal, and sorting enums for each
    removed candidate was most of routing's time on large routes (bench/routing.py)."""
    return str(sorted(values))


def _before_cost(dep: Deployment, req: Requirement) -> str | None:
    """The checks of `violation` that come before the cost ceiling; they depend on nothing per request."""
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
    return None


def _after_cost(dep: Deployment, req: Requirement) -> str | None:
    if req.deployments is not None and dep.name not in req.deployments:
        return f"not one of {_listed(req.deployments)}"
    return None


def violation(dep: Deployment, req: Requirement, est_cost: float) -> str | None:
    """Why `dep` breaks `req`, or None when it satisfies it."""
    why = _before_cost(dep, req)
    if why is None and req.max_cost_usd is not None and est_cost > req.max_cost_usd:
        why = f"estimated cost ${est_cost:.6f} above ${req.max_cost_usd}"
    return why if why is not None else _after_cost(dep, req)


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


_RulesKey = tuple[object, ...]
# What _apply_rules leaves: alive, strategy, preferences, and the removals, notes and requirements it added.
_Applied = tuple[
    tuple[int, ...],
    Strategy,
    tuple[tuple[str, Requirement], ...],
    tuple[Removal, ...],
    tuple[str, ...],
    tuple[Requirement, ...],
]


class _Compiled:
    """What routing needs about one route of one policy that does not depend on the request, built once.

    Candidates are addressed by index; each requirement's per-deployment verdicts (everything but the
    cost ceiling) are computed on first use and kept, so a request only reads lists and prices.
    """

    __slots__ = (
        "applied",
        "deprecated",
        "deps",
        "latency",
        "matched",
        "names",
        "neg_quality",
        "policy",
        "prices",
        "route",
        "rules",
        "tables",
    )

    def __init__(self, route: Route, policy: Policy) -> None:
        self.route, self.policy = route, policy
        self.deps = [policy.deployments[name] for name in route.candidates]
        self.names = [d.name for d in self.deps]
        self.neg_quality = [-d.quality for d in self.deps]
        self.latency = [d.latency_ms if d.latency_ms is not None else float("inf") for d in self.deps]
        self.prices = [_price_terms(d, policy.providers[d.provider]) for d in self.deps]
        self.deprecated = [(i, d.deprecation_date) for i, d in enumerate(self.deps) if d.deprecation_date]
        self.rules = [(rule, rule.label(i)) for i, rule in enumerate(route.rules)]
        self.matched: dict[_RulesKey, tuple[list[tuple[Rule, str]], bool]] = {}
        self.applied: dict[tuple[_RulesKey, tuple[int, ...]], _Applied] = {}
        self.tables: dict[int, tuple[Requirement, list[str | None], list[str | None], list[str | None]]] = {}

    def costs(self, est: UsageEstimate) -> list[float]:
        """`pricing.estimated_cost` for every candidate, with the same arithmetic in the same order."""
        prompt, output, images, megapixels = est.prompt_tokens, est.output_tokens, est.images, est.megapixels
        image_tokens = round(megapixels * IMAGE_TOKENS_PER_MEGAPIXEL)
        units = max(1, images)
        out: list[float] = []
        for price, by_token, hourly, per_call in self.prices:
            cost = 0.0
            if price is not None:
                per_request, per_in, per_out, per_image, per_mp = price
                part = per_request or 0.0
                if per_in:
                    part += prompt * per_in / 1e6
                if per_out:
                    part += (output + image_tokens if by_token else output) * per_out / 1e6
                if per_image:
                    part += images * per_image
                if per_mp:
                    part += megapixels * per_mp
                cost += part
            if hourly is not None:
                cost += per_call * units * hourly / 3600.0
            out.append(cost)
        return out

    def rules_for(self, signals: Signals) -> tuple[list[tuple[Rule, str]], _RulesKey, bool]:
        """The rules matching `signals`, their cache key, and whether none of them depends on cost."""
        key = (signals.classification, bool(signals.pii), signals.quality, signals.tenant, signals.modality)
        found = self.matched.get(key)
        if found is None:
            rules = [(rule, label) for rule, label in self.rules if _matches(rule.when, signals)]
            cost_free = not any(r.require and r.require.max_cost_usd is not None for r, _ in rules)
            if len(self.matched) >= _MATCH_CACHE:
                self.matched.clear()
            found = self.matched[key] = (rules, cost_free)
        return found[0], key, found[1]

    def table(self, req: Requirement) -> tuple[list[str | None], list[str | None], list[str | None]]:
        """Per candidate: the reason before the cost check, after it, and either (when cost plays no part)."""
        entry = self.tables.get(id(req))
        if entry is None or entry[0] is not req:
            before = [_before_cost(d, req) for d in self.deps]
            after = [_after_cost(d, req) for d in self.deps]
            either = [b if b is not None else a for b, a in zip(before, after, strict=True)]
            entry = self.tables[id(req)] = (req, before, after, either)
        return entry[1], entry[2], entry[3]

    def reasons(self, req: Requirement, alive: list[int], costs: list[float]) -> list[str | None]:
        """`violation(candidate, req, cost)` for each index in `alive`."""
        before, after, either = self.table(req)
        cap = req.max_cost_usd
        if cap is None:
            return [either[i] for i in alive]
        out: list[str | None] = []
        for i in alive:
            why = before[i]
            if why is None:
                cost = costs[i]
                why = f"estimated cost ${cost:.6f} above ${cap}" if cost > cap else after[i]
            out.append(why)
        return out


_MATCH_CACHE = 4096
_COMPILED_CACHE = 64
_compiled_routes: dict[tuple[int, int], _Compiled] = {}


def _compiled(route: Route, policy: Policy) -> _Compiled:
    """The compiled form of `route` under `policy`, by identity (both are frozen; a reload makes new ones)."""
    c = _compiled_routes.get((id(route), id(policy)))
    if c is None or c.route is not route or c.policy is not policy:
        if len(_compiled_routes) >= _COMPILED_CACHE:
            _compiled_routes.clear()
        c = _compiled_routes[(id(route), id(policy))] = _Compiled(route, policy)
    return c


_PriceTerms = tuple[
    tuple[float | None, float | None, float | None, float | None, float | None] | None,
    bool,
    float | None,
    float,
]


def _price_terms(dep: Deployment, provider: ProviderSpec) -> _PriceTerms:
    price = dep.price
    terms = None
    by_token = False
    if price is not None:
        terms = (
            price.per_request,
            price.input_per_mtok,
            price.output_per_mtok,
            price.per_image,
            price.per_megapixel,
        )
        by_token = not (price.per_image or price.per_megapixel or not price.output_per_mtok)
    return terms, by_token, provider.usd_per_hour, dep.est_device_seconds or DEFAULT_DEVICE_SECONDS


def plan_route(
    route: Route,
    signals: Signals,
    policy: Policy,
    *,
    health: Mapping[str, str],
    today: dt.date,
) -> RoutingPlan:
    """Decide the ordered deployments to try. Raises PolicyDenied or NoEligibleDeployment."""
    c = _compiled(route, policy)
    names = c.names
    costs = c.costs(signals.estimate)
    plan = RoutingPlan(route=route.name, order=[], hard=privacy_floor(policy, signals))
    plan.est_cost = dict(zip(names, costs, strict=True))
    alive = _healthy_and_allowed(c, signals, plan, costs, health=health, today=today)
    alive, strategy, preferred = _apply_rules(c, signals, plan, alive, costs)
    if strategy is Strategy.CHEAPEST:
        order = sorted(alive, key=costs.__getitem__)
    elif strategy is Strategy.BEST_QUALITY:
        order = sorted(alive, key=c.neg_quality.__getitem__)
    elif strategy is Strategy.FASTEST:
        order = sorted(alive, key=c.latency.__getitem__)
    else:
        order = alive
    for label, want in preferred:  # later prefers are applied last, so they dominate
        why = c.reasons(want, order, costs)
        first = [i for i, w in zip(order, why, strict=True) if w is None]
        if first:
            order = first + [i for i, w in zip(order, why, strict=True) if w is not None]
            plan.notes.append(f"{label}: prefers {', '.join(names[i] for i in first)}")
    deps = c.deps
    plan.order = [deps[i] for i in order]
    ceilings = [r.max_cost_usd for r in plan.hard if r.max_cost_usd is not None]
    if signals.max_cost_usd is not None:
        ceilings.append(signals.max_cost_usd)
    if ceilings:
        cap_output(plan, policy, signals.estimate, min(ceilings))
    if not order:
        detail = "; ".join(f"{r.deployment}: {r.reason}" for r in plan.removed)
        message = f"no deployment of route {route.name!r} may serve this request ({detail})"
        if any(r.deployment in health or r.reason.startswith("retired") for r in plan.removed):
            raise NoEligibleDeployment(message)
        raise PolicyDenied(message, code="no_allowed_deployment")
    return plan


def cap_output(plan: RoutingPlan, policy: Policy, estimate: UsageEstimate, ceiling_usd: float) -> None:
    """Hold a chat request to `ceiling_usd` on every deployment of the plan priced per output token: its
    output is capped at what the ceiling affords there (RoutingPlan.output_caps; the lower cap wins)."""
    if not estimate.output_tokens or estimate.images:
        return  # embeddings have no output; image output is not limited by max_tokens
    caps = plan.output_caps
    for dep in plan.order:
        cap = output_token_cap(dep, policy.providers[dep.provider], estimate, ceiling_usd)
        if cap is not None and (dep.name not in caps or cap < caps[dep.name]):
            caps[dep.name] = cap


def _healthy_and_allowed(
    c: _Compiled,
    signals: Signals,
    plan: RoutingPlan,
    costs: list[float],
    *,
    health: Mapping[str, str],
    today: dt.date,
) -> list[int]:
    """Steps 1-3: the privacy floor, health and deprecation, the request's own ceilings."""
    names, deps = c.names, c.deps
    n = len(names)
    reasons: list[str | None] = [None] * n
    if health:
        for i, name in enumerate(names):
            if name in health:
                reasons[i] = health[name] or None
    for i, when in c.deprecated:
        if reasons[i] is None and when <= today:
            reasons[i] = f"retired: past its deprecation date {when.isoformat()}"
    everyone = list(range(n))
    for req in plan.hard:
        for i, why in zip(everyone, c.reasons(req, everyone, costs), strict=True):
            if why is not None and reasons[i] is None:
                reasons[i] = f"privacy floor: {why}"
    if signals.min_quality is not None or signals.max_cost_usd is not None:
        _request_ceilings(deps, signals, reasons, costs)
    alive: list[int] = []
    for i, why in enumerate(reasons):
        if why:
            plan.removed.append(Removal(names[i], why))
        else:
            alive.append(i)
    return alive


def _request_ceilings(
    deps: list[Deployment], signals: Signals, reasons: list[str | None], costs: list[float]
) -> None:
    """Step 3: `x-quality` as a number and `x-max-cost-usd`, in `violation`'s order and wording."""
    min_quality, max_cost = signals.min_quality, signals.max_cost_usd
    for i, dep in enumerate(deps):
        if reasons[i] is None:
            if min_quality is not None and dep.quality < min_quality:
                reasons[i] = f"request header: quality {dep.quality} below {min_quality}"
            elif max_cost is not None and costs[i] > max_cost:
                reasons[i] = f"request header: estimated cost ${costs[i]:.6f} above ${max_cost}"


def _apply_rules(
    c: _Compiled, signals: Signals, plan: RoutingPlan, alive: list[int], costs: list[float]
) -> tuple[list[int], Strategy, list[tuple[str, Requirement]]]:
    """Step 4: the route's rules in order. Returns what is left, the strategy, and the preferences.

    When no matched `require` carries a cost ceiling, the outcome depends only on the matched rules and
    on who is still alive, so it is kept per (rules, alive) and replayed: requests of one class (tenant,
    classification, ...) then pay for the rules once, not on every call.
    """
    rules, key, cost_free = c.rules_for(signals)
    memo_key = (key, tuple(alive)) if cost_free else None
    if memo_key is not None:
        memo = c.applied.get(memo_key)
        if memo is not None:
            plan.removed.extend(memo[3])
            plan.notes.extend(memo[4])
            plan.hard.extend(memo[5])
            return list(memo[0]), memo[1], list(memo[2])
    removed_before, notes_before, hard_before = len(plan.removed), len(plan.notes), len(plan.hard)
    route, names = c.route, c.names
    strategy = route.strategy
    preferred: list[tuple[str, Requirement]] = []
    for rule, label in rules:
        if rule.deny is not None:
            raise PolicyDenied(f"route {route.name!r} refused this request ({label}): {rule.deny}")
        if rule.require is not None:
            plan.hard.append(rule.require)
            why = c.reasons(rule.require, alive, costs)
            kept: list[int] = []
            for i, w in zip(alive, why, strict=True):
                if w:
                    plan.removed.append(Removal(names[i], f"{label} requires: {w}"))
                else:
                    kept.append(i)
            alive = kept
        if isinstance(rule.prefer, Strategy):
            strategy = rule.prefer
            plan.notes.append(f"{label}: order by {rule.prefer}")
        elif rule.prefer is not None:
            preferred.append((label, rule.prefer))
    if memo_key is not None:
        if len(c.applied) >= _MATCH_CACHE:
            c.applied.clear()
        c.applied[memo_key] = (
            tuple(alive),
            strategy,
            tuple(preferred),
            tuple(plan.removed[removed_before:]),
            tuple(plan.notes[notes_before:]),
            tuple(plan.hard[hard_before:]),
        )
    return alive, strategy, preferred
