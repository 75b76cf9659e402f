"""After a request: its real cost, its budget settlement, its metrics and its ledger row, in one place.

Spend is never under-counted: when an upstream reports no usage, tokens are estimated from the text
(and the row is marked estimated); a self-hosted upstream that reports no device-seconds is charged the
wall time of the call. The budget is settled before the row is written, so a row that cannot be written
(LedgerUnavailable: the answer is then withheld) still leaves its cost counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import AllAttemptsFailed, GatewayError, NoEligibleDeployment, PolicyDenied, RouteNotFound
from gateway.ledger import Ledger, LedgerRow
from gateway.metrics import Metrics
from gateway.pricing import actual_cost
from providers.base import Usage

UNKNOWN_ROUTE = "_unknown"

if TYPE_CHECKING:
    from gateway.fallback import Outcome
    from gateway.serving import Prepared, Request


@dataclass(slots=True, frozen=True)
class Finished:
    deployment: str
    attempts: int
    cost_usd: float
    usage: Usage  # as charged: the upstream's counts, or the estimates that stood in for them


class Accounting:
    def __init__(
        self,
        metrics: Metrics,
        ledger: Ledger,
        clock: Any = time.perf_counter,
    ) -> None:
        self.metrics = metrics
        self.ledger = ledger
        self.clock = clock

    def refused(self, req: Request, route: str, exc: GatewayError) -> None:
        if isinstance(exc, RouteNotFound):
            route = UNKNOWN_ROUTE  # a caller's typo must not become a new metric label
        if isinstance(exc, (PolicyDenied, NoEligibleDeployment)):
            self.metrics.denials.labels(route, req.tenant, exc.code or "denied").inc()
        self._row(req, route, status=exc.status, code=exc.code, attempts=0)

    def failed(self, req: Request, prep: Prepared, exc: GatewayError) -> None:
        attempts = exc.attempts if isinstance(exc, AllAttemptsFailed) else 0
        if isinstance(exc, NoEligibleDeployment):
            self.metrics.denials.labels(prep.route.name, req.tenant, exc.code or "unavailable").inc()
        self._row(req, prep.route.name, status=exc.status, code=exc.code, attempts=attempts)

    def finished(
        self,
        req: Request,
        prep: Prepared,
        outcome: Outcome[Any],
        usage: Usage | None,
        *,
        streamed_text: str,
        error: GatewayError | None = None,
        status: int = 200,
    ) -> Finished:
        dep = outcome.deployment
        spec = prep.loaded.policy.providers[dep.provider]
        usage = self._complete_usage(usage, prep, outcome, streamed_text)
        cost = actual_cost(dep, spec, usage)
        # The budget learns the real cost first: if the row below cannot be written, the money was still
        # spent upstream, and the reservation must not stay held.
        prep.ticket.settle(cost, usage.total_tokens)
        elapsed = self.clock() - req.received
        counts = self.metrics.answered(req.tenant, prep.route.name, dep.provider, dep.name, status)
        counts.requests.inc()
        counts.duration.observe(elapsed)
        counts.cost.inc(cost)
        m, labels = self.metrics, counts.labels
        if usage.prompt_tokens:
            m.child(m.tokens, *labels, "prompt").inc(usage.prompt_tokens)
        if usage.completion_tokens:
            m.child(m.tokens, *labels, "completion").inc(usage.completion_tokens)
        if usage.images:
            m.child(m.images, *labels).inc(usage.images)
        # Spooled before the answer leaves: on disk for a crash of this process (gateway/ledger.py).
        self.ledger.record(
            LedgerRow(
                id=req.row_id or req.id,
                ts=time.time(),
                tenant=req.tenant,
                route=prep.route.name,
                modality=req.modality.value,
                deployment=dep.name,
                provider=dep.provider,
                openness=dep.openness.value,
                attempts=len(outcome.attempts),
                fallbacks=outcome.fallbacks,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                images=usage.images,
                device_seconds=usage.device_seconds,
                cost_usd=cost,
                cost_estimated=usage.estimated,
                latency_ms=elapsed * 1000.0,
                status=status,
                error_code=error.code if error else None,
                stream=bool(req.body.get("stream")),
                key_id=req.key.id if req.key else None,
                request_id=req.id,
            )
        )
        return Finished(dep.name, len(outcome.attempts), cost, usage)

    def overhead(self, route: str, seconds: float) -> None:
        self.metrics.child(self.metrics.overhead, route).observe(max(0.0, seconds))

    def _complete_usage(self, usage: Usage | None, prep: Prepared, outcome: Outcome[Any], text: str) -> Usage:
        u = usage or Usage(estimated=True)
        est = prep.signals.estimate
        if u.estimated or (u.prompt_tokens == 0 and u.completion_tokens == 0 and u.images == 0):
            u.estimated = True
            u.prompt_tokens = u.prompt_tokens or est.prompt_tokens
            u.completion_tokens = u.completion_tokens or (len(text) // 3 + 1 if text else 0)
            u.images = u.images or est.images
        if est.images and not u.megapixels:
            u.megapixels = est.megapixels * (u.images / est.images)
        spec = prep.loaded.policy.providers[outcome.deployment.provider]
        if spec.usd_per_hour is not None and u.device_seconds <= 0:
            u.device_seconds = outcome.attempts[-1].seconds if outcome.attempts else 0.0
            u.estimated = True
        return u

    def _row(self, req: Request, route: str, *, status: int, code: str | None, attempts: int) -> None:
        elapsed = self.clock() - req.received
        self.metrics.child(self.metrics.requests, req.tenant, route or "-", "-", str(status)).inc()
        self.ledger.record(
            LedgerRow(
                id=req.row_id or req.id,
                ts=time.time(),
                tenant=req.tenant,
                route=route,
                modality=req.modality.value,
                deployment=None,
                provider=None,
                openness=None,
                attempts=attempts,
                fallbacks=max(0, attempts - 1),
                prompt_tokens=0,
                completion_tokens=0,
                images=0,
                device_seconds=0.0,
                cost_usd=0.0,
                cost_estimated=False,
                latency_ms=elapsed * 1000.0,
                status=status,
                error_code=code,
                stream=bool(req.body.get("stream")),
                key_id=req.key.id if req.key else None,
                request_id=req.id,
            )
        )
