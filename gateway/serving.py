"""The gateway's domain object: one request from parsed body to answer, with no HTTP in it.

    signals (gateway/signals.py) -> plan (gateway/routing.py) -> attempts (gateway/fallback.py)
    -> provider -> cost (gateway/pricing.py) -> metrics + ledger (gateway/accounting.py)

`api/*` modules call `Gateway.complete()` or `Gateway.open_stream()` and only translate to HTTP.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.accounting import Accounting, Finished
from gateway.admission import Admission, Ticket
from gateway.breaker import Breakers
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    LedgerUnavailable,
    PolicyDenied,
    RouteNotFound,
    UpstreamError,
)
from gateway.fallback import FallbackRunner, Outcome
from gateway.keys import ApiKey
from gateway.pii import PiiDetector
from gateway.policy import DEFAULT_OUTPUT_TOKENS, Deployment, Modality, Policy, Route
from gateway.policy_store import LoadedPolicy, PolicyStore
from gateway.providers_env import provider_secrets
from gateway.routing import RoutingPlan, plan_route
from gateway.signals import Signals, UsageEstimate, extract_signals
from gateway.streaming import OpenStream, first_chunk
from providers.base import JSON, CallContext, Provider, ProviderResult


@dataclass(slots=True)
class Request:
    """One parsed client request, as the service sees it."""

    id: str
    modality: Modality
    body: JSON
    headers: Mapping[str, str]
    tenant: str
    received: float
    key: ApiKey | None = None
    # The ledger row's id: `id` itself unless the caller chose it (callers may reuse theirs).
    row_id: str = ""
    # The body as the caller sent it, when `body` is its translation (a Responses API request).
    source: JSON | None = None


@dataclass(slots=True)
class Prepared:
    loaded: LoadedPolicy
    route: Route
    signals: Signals
    plan: RoutingPlan
    ticket: Ticket


@dataclass(slots=True)
class Answer:
    body: JSON
    headers: dict[str, str]


class Gateway:
    def __init__(
        self,
        store: PolicyStore,
        breakers: Breakers,
        accounting: Accounting,
        runner: FallbackRunner,
        admission: Admission,
        *,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.store = store
        self.breakers = breakers
        self.accounting = accounting
        self.runner = runner
        self.admission = admission
        self.today = today

    def health(self) -> dict[str, str]:
        return {name: f"retired: {why}" for name, why in self.breakers.retired().items()}

    async def prepare(self, req: Request) -> Prepared:
        """Route lookup, signals and plan; raises GatewayError for refusals (and accounts them)."""
        loaded = self.store.current
        policy = loaded.policy
        name = str(req.body.get("model", ""))
        try:
            if not self.accounting.ledger.writable():
                raise LedgerUnavailable()
            route = policy.routes.get(name)
            if route is None:
                raise RouteNotFound(
                    f"the model {name!r} is not a route of this gateway; GET /v1/models lists them",
                    param="model",
                )
            modality = policy.route_modality(route)
            if modality is not req.modality:
                raise InvalidRequest(
                    f"route {name!r} serves {modality} requests, not {req.modality}",
                    param="model",
                    code="wrong_modality",
                )
            headers = _tenant_defaults(policy, req.tenant, name, req.headers)
            texts = texts_of(req.modality, req.body)
            signals = extract_signals(
                route,
                req.modality,
                headers,
                texts,
                tenant=req.tenant,
                detector=loaded.detector,
                estimate=estimate_usage(req.modality, req.body, texts, policy.limits.default_output_tokens),
            )
            plan = plan_route(route, signals, policy, health=self.health(), today=self.today())
            ticket = await self.admission.admit(policy, req.tenant, req.key, plan, signals.estimate)
        except GatewayError as exc:
            self.accounting.refused(req, name, exc)
            raise
        return Prepared(loaded, route, signals, plan, ticket)

    async def complete(self, req: Request) -> Answer:
        """A non-streamed chat, image or embedding request."""
        prep = await self.prepare(req)
        method = {Modality.CHAT: "chat", Modality.IMAGE: "images", Modality.EMBEDDING: "embeddings"}[
            req.modality
        ]

        policy = prep.loaded.policy

        async def call(provider: Provider, dep: Any, ctx: CallContext) -> ProviderResult:
            body = within_ceiling(req.body, dep, prep.plan, policy)
            result: ProviderResult = await getattr(provider, method)(dep, body, ctx)
            return result

        try:
            outcome: Outcome[ProviderResult] = await self.runner.run(
                prep.plan, prep.loaded.policy, prep.loaded.providers, call, request_id=req.id
            )
        except BaseException as exc:
            prep.ticket.settle(0.0, 0)
            if isinstance(exc, GatewayError):
                self.accounting.failed(req, prep, exc)
            raise
        body = outcome.value.body
        if req.modality is Modality.IMAGE:
            _images_as_requested(body, req.body.get("response_format"))
        text = _answer_text(body) if req.modality is Modality.CHAT else ""
        done = self.accounting.finished(req, prep, outcome, outcome.value.usage, streamed_text=text)
        self._overhead(req, prep, outcome)
        return Answer(body, self.headers(req, prep, done, basis="actual"))

    def _overhead(self, req: Request, prep: Prepared, outcome: Outcome[Any]) -> None:
        spent = time.perf_counter() - req.received - outcome.upstream_seconds - outcome.waited_seconds
        self.accounting.overhead(prep.route.name, spent)

    async def open_stream(self, req: Request) -> OpenStream:
        """A streamed chat: returns once the first chunk is in hand (fallback is invisible until then)."""
        prep = await self.prepare(req)

        policy = prep.loaded.policy
        attempt = first_chunk(lambda dep: within_ceiling(req.body, dep, prep.plan, policy))
        try:
            outcome = await self.runner.run(
                prep.plan, policy, prep.loaded.providers, attempt, request_id=req.id
            )
        except BaseException as exc:
            prep.ticket.settle(0.0, 0)
            if isinstance(exc, GatewayError):
                self.accounting.failed(req, prep, exc)
            raise
        self._overhead(req, prep, outcome)
        first, rest = outcome.value
        include_usage = bool((req.body.get("stream_options") or {}).get("include_usage"))

        def finish(usage: Any, text: str, error: UpstreamError | None, status: int) -> Finished:
            return self.accounting.finished(
                req, prep, outcome, usage, streamed_text=text, error=error, status=status
            )

        est = prep.plan.est_cost.get(outcome.deployment.name, 0.0)
        headers = self.headers(
            req,
            prep,
            None,
            basis="estimate",
            deployment=outcome.deployment.name,
            attempts=len(outcome.attempts),
            cost=est,
        )
        secrets = provider_secrets(prep.loaded.policy)
        return OpenStream(first, rest, include_usage, headers, finish, secrets)

    def headers(
        self,
        req: Request,
        prep: Prepared,
        done: Finished | None,
        *,
        basis: str,
        deployment: str | None = None,
        attempts: int | None = None,
        cost: float | None = None,
    ) -> dict[str, str]:
        dep_name = done.deployment if done else deployment
        dep = prep.loaded.policy.deployments[dep_name] if dep_name else None
        return {
            "x-request-id": req.id,
            "x-gateway-route": prep.route.name,
            "x-gateway-deployment": dep_name or "",
            "x-gateway-provider": dep.provider if dep else "",
            "x-gateway-attempts": str(done.attempts if done else attempts),
            "x-gateway-cost-usd": f"{(done.cost_usd if done else cost or 0.0):.8f}",
            "x-gateway-cost-basis": basis,
        }

    def explain(
        self, body: JSON, headers: Mapping[str, str], tenant: str, modality: Modality | None = None
    ) -> JSON:
        """What routing would do with this request, without calling anything."""
        loaded = self.store.current
        route = loaded.policy.routes.get(str(body.get("model", "")))
        if route is None:
            raise RouteNotFound(
                f"the model {body.get('model')!r} is not a route of this gateway", param="model"
            )
        return explain_plan(
            loaded.policy,
            loaded.detector,
            route,
            body,
            headers=headers,
            tenant=tenant,
            health=self.health(),
            today=self.today(),
        )


def explain_plan(
    policy: Policy,
    detector: PiiDetector,
    route: Route,
    body: JSON,
    *,
    headers: Mapping[str, str],
    tenant: str,
    health: Mapping[str, str],
    today: dt.date,
) -> JSON:
    """The candidates, the signals, what each rule removed or reordered, and the order that would be tried."""
    modality = policy.route_modality(route)
    texts = texts_of(modality, body)
    signals = extract_signals(
        route,
        modality,
        headers,
        texts,
        tenant=tenant,
        detector=detector,
        estimate=estimate_usage(modality, body, texts, policy.limits.default_output_tokens),
    )
    summary = {
        "classification": signals.classification.value,
        "pii": sorted(signals.pii),
        "quality": signals.quality,
        "min_quality": signals.min_quality,
        "max_cost_usd": signals.max_cost_usd,
        "tenant": signals.tenant,
        "modality": signals.modality.value,
    }
    try:
        plan = plan_route(route, signals, policy, health=health, today=today)
    except GatewayError as exc:
        return {
            "route": route.name,
            "candidates": list(route.candidates),
            "signals": summary,
            "refused": exc.body()["error"],
        }
    return {"candidates": list(route.candidates), "signals": summary, **plan.explain()}


def _tenant_defaults(
    policy: Policy, tenant: str, route: str, headers: Mapping[str, str]
) -> Mapping[str, str]:
    """A tenant's allowed routes and default signals; the request's own headers win over defaults."""
    spec = policy.tenants.get(tenant)
    if spec is None:
        return headers
    if spec.routes is not None and route not in spec.routes:
        raise PolicyDenied(f"tenant {tenant!r} may not use route {route!r}", code="route_not_allowed")
    merged = dict(headers)
    if spec.default_classification is not None:
        merged.setdefault("x-data-classification", spec.default_classification.value)
    if spec.quality is not None:
        merged.setdefault("x-quality", spec.quality)
    return merged


def texts_of(modality: Modality, body: JSON) -> list[str]:
    """The caller's text, for PII detection."""
    if modality is Modality.CHAT:
        texts: list[str] = []
        for m in body.get("messages", []):
            content = m.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return texts
    if modality is Modality.IMAGE:
        return [str(body.get("prompt", ""))]
    inp = body.get("input")
    return [inp] if isinstance(inp, str) else [s for s in inp or [] if isinstance(s, str)]


def estimate_usage(
    modality: Modality,
    body: JSON,
    texts: list[str] | None = None,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> UsageEstimate:
    if modality is Modality.IMAGE:
        n = int(body.get("n") or 1)
        size = str(body.get("size") or "1024x1024")
        w, _, h = size.partition("x")
        mp = (int(w) * int(h) / 1e6) if w.isdigit() and h.isdigit() else 1.048576
        return UsageEstimate(images=n, megapixels=mp * n)
    chars = sum(len(t) for t in (texts if texts is not None else texts_of(modality, body)))
    prompt = chars // 3 + 8  # conservative: real tokenizers average ~4 characters a token
    if modality is Modality.EMBEDDING:
        return UsageEstimate(prompt_tokens=prompt)
    out = body.get("max_completion_tokens") or body.get("max_tokens") or default_output_tokens
    return UsageEstimate(prompt_tokens=prompt, output_tokens=int(out) * int(body.get("n") or 1))


def within_ceiling(body: JSON, dep: Deployment, plan: RoutingPlan, policy: Policy) -> JSON:
    """The body of one attempt on `dep`. Under a cost ceiling, its output is capped at what the ceiling
    affords on that deployment (RoutingPlan.output_caps), so a long answer cannot cost more than the
    ceiling the estimate was checked against; a caller's own smaller limit is kept."""
    cap = plan.output_caps.get(dep.name)
    if cap is None:
        return body
    per_choice = max(1, cap // int(body.get("n") or 1))
    given = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(given, int) and given <= per_choice:
        return body
    # OpenAI's reasoning models refuse max_tokens; every other upstream kind takes it.
    modern = "max_completion_tokens" in body or policy.providers[dep.provider].kind == "openai"
    capped = {k: v for k, v in body.items() if k not in ("max_tokens", "max_completion_tokens")}
    capped["max_completion_tokens" if modern else "max_tokens"] = per_choice
    return capped


def _answer_text(body: JSON) -> str:
    parts: list[str] = []
    for choice in body.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                parts.append(message["content"])
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    parts.append(str(fn.get("arguments", "")))
    return "".join(parts)


def _images_as_requested(body: JSON, response_format: object) -> None:
    """A caller that asked for URLs gets data: URLs when the upstream only returned base64."""
    if response_format != "url":
        return
    for item in body.get("data", []):
        if isinstance(item, dict) and not item.get("url") and item.get("b64_json"):
            item["url"] = "data:image/png;base64," + item.pop("b64_json")
