"""Prometheus metrics. One `Metrics` object per app, on its own registry.

With several worker processes, `gateway serve --workers N` sets PROMETHEUS_MULTIPROC_DIR before any
worker starts; prometheus-client then keeps values in shared files and `/metrics` aggregates them, so
counters are right whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.breaker import BreakerState

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class AnswerChildren:
    labels: tuple[str, str, str, str]  # tenant, route, provider, deployment: for tokens and images
    requests: Any
    duration: Any
    cost: Any


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._answered: dict[tuple[str, str, str, str, int], AnswerChildren] = {}
        r = self.registry
        usage_labels = ["tenant", "route", "provider", "deployment"]
        self.requests = Counter(
            "gateway_requests", "Requests answered", ["tenant", "route", "deployment", "status"], registry=r
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to last byte",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself (total minus upstream calls and backoff waits)",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Moves from one deployment to the next",
            ["route", "from", "to", "reason"],
            registry=r,
        )
        self.cost = Counter("gateway_cost_usd", "Spend in USD", usage_labels, registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens", [*usage_labels, "type"], registry=r)
        self.images = Counter("gateway_images", "Images generated", usage_labels, registry=r)
        self.deployment_state = Gauge(
            "gateway_deployment_state",
            "1 for the state each deployment is in (closed, open, half_open, retired, deprecated)",
            ["deployment", "state"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.deprecation_days = Gauge(
            "gateway_deployment_deprecation_days_left",
            "Days until a deployment's deprecation date",
            ["deployment"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.ledger_writable = Gauge(
            "gateway_ledger_writable",
            "1 while ledger rows can be spooled; 0 while they cannot (requests are refused: full disk?)",
            multiprocess_mode="min",
            registry=r,
        )
        self.ledger_backlog = Gauge(
            "gateway_ledger_backlog_rows",
            "Ledger rows spooled but not yet in the database (grows while the database is unreachable)",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.denials = Counter(
            "gateway_policy_denials", "Requests refused by policy", ["route", "tenant", "code"], registry=r
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Failed upstream calls", ["deployment", "kind"], registry=r
        )
        self.privacy_blocks = Counter(
            "gateway_privacy_blocks",
            "Calls the second privacy lock refused (should stay 0: a non-zero value is a routing bug)",
            ["route", "deployment"],
            registry=r,
        )
        self.reloads = Counter("gateway_policy_reloads", "Policy reloads", ["result"], registry=r)
        budget_labels = ["tenant", "scope", "period"]
        self.budget_remaining = Gauge(
            "gateway_budget_remaining_usd",
            "Budget left in the current day or month",
            budget_labels,
            multiprocess_mode="min",
            registry=r,
        )
        self.budget_limit = Gauge(
            "gateway_budget_limit_usd",
            "Budget of the current day or month",
            budget_labels,
            multiprocess_mode="max",
            registry=r,
        )
        self.budget_rejections = Counter(
            "gateway_budget_rejections",
            "Requests that found their budget spent",
            ["tenant", "period"],
            registry=r,
        )
        self.rate_limit_rejections = Counter(
            "gateway_rate_limit_rejections",
            "Requests refused by a rate limit",
            ["tenant", "kind"],
            registry=r,
        )

    def answered(
        self, tenant: str, route: str, provider: str, deployment: str, status: int
    ) -> AnswerChildren:
        """The children every answered request counts on, looked up once per label set (one dict lookup)."""
        key = (tenant, route, provider, deployment, status)
        found = self._answered.get(key)
        if found is None:
            labels = (tenant, route, provider, deployment)
            found = self._answered[key] = AnswerChildren(
                labels=labels,
                requests=self.requests.labels(tenant, route, deployment, str(status)),
                duration=self.duration.labels(route),
                cost=self.cost.labels(*labels),
            )
        return found

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: prometheus-client takes a lock and rebuilds the label tuple on
        every call, and the request path asks for the same few children thousands of times a second."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def fallback(self, route: str, source: str, to: str, reason: str) -> None:
        self.fallbacks.labels(route, source, to, reason).inc()

    def upstream_error(self, deployment: str, kind: str) -> None:
        self.upstream_errors.labels(deployment, kind).inc()

    def privacy_block(self, route: str, deployment: str) -> None:
        self.privacy_blocks.labels(route, deployment).inc()

    def set_state(self, deployment: str, state: BreakerState | str) -> None:
        for s in [*BreakerState, "deprecated"]:
            self.deployment_state.labels(deployment, str(s)).set(1.0 if str(s) == str(state) else 0.0)

    def exposition(self) -> bytes:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
