"""The routing policy: what ops write in YAML, as pydantic models.

The loader (gateway/policy_loader.py) turns a file into a `Policy`, naming file, line and reason for every
problem. Everything routing needs per request is precomputed here at load (`Route.deployments`,
frozensets in conditions), so the per-request path only compares values.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a policy must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Modality(enum.StrEnum):
    CHAT = "chat"
    IMAGE = "image"
    EMBEDDING = "embedding"


class Openness(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class DataLocation(enum.StrEnum):
    LOCAL = "local"
    ON_PREM = "on_prem"
    VENDOR = "vendor"


class Classification(enum.StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"


class Strategy(enum.StrEnum):
    ORDERED = "ordered"
    CHEAPEST = "cheapest"
    BEST_QUALITY = "best_quality"
    FASTEST = "fastest"


class ProviderSpec(StrictModel):
    """How to reach one upstream. Keys are named by env var, never written here."""

    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(5.0, gt=0, le=300)
    max_connections: int = Field(256, ge=1, le=100_000)
    # Larger upstream answers are refused as transient (and fall back): memory per request stays bounded.
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Hardware price for self-hosted providers: device-seconds reported by the upstream become dollars.
    usd_per_hour: float | None = Field(None, ge=0)
    # `gateway serve` starts and stops the local backend for this provider itself.
    managed: bool = False
    managed_config: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class DataPolicy(StrictModel):
    location: DataLocation
    retains: bool = False
    region: str | None = None


class Price(StrictModel):
    """USD prices; any field left out does not apply to this deployment."""

    input_per_mtok: float | None = Field(None, ge=0)
    output_per_mtok: float | None = Field(None, ge=0)
    per_image: float | None = Field(None, ge=0)
    per_megapixel: float | None = Field(None, ge=0)
    per_request: float | None = Field(None, ge=0)

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())


class Deployment(StrictModel):
    """A model on a provider: what routing chooses between."""

    name: str = ""
    provider: str
    model: str
    modality: Modality
    openness: Openness
    data: DataPolicy
    quality: int = Field(50, ge=0, le=100)
    price: Price | None = None
    # Expected latency (for the `fastest` strategy); expected device time per request (local cost estimates).
    latency_ms: float | None = Field(None, gt=0)
    est_device_seconds: float | None = Field(None, gt=0)
    context_window: int | None = Field(None, gt=0)
    deprecation_date: dt.date | None = None


def _as_set(value: Any) -> Any:
    if value is None or isinstance(value, (list, tuple, set, frozenset)):
        return None if value is None else frozenset(value)
    return frozenset([value])


class Condition(StrictModel):
    """`when:` of a rule. Every field given must match; an empty condition always matches."""

    classification: frozenset[Classification] | None = None
    pii: bool | None = None
    quality: frozenset[str] | None = None
    tenant: frozenset[str] | None = None
    modality: frozenset[Modality] | None = None

    @field_validator("classification", "quality", "tenant", "modality", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_set(value)


class Requirement(StrictModel):
    """A set of constraints on deployments, used by `require:` (hard filter) and `prefer:` (reorder)."""

    data_location: frozenset[DataLocation] | None = None
    openness: Openness | None = None
    no_retention: bool | None = None
    regions: frozenset[str] | None = None
    min_quality: int | None = Field(None, ge=0, le=100)
    max_cost_usd: float | None = Field(None, ge=0)
    deployments: frozenset[str] | None = None

    @field_validator("data_location", "regions", "deployments", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_set(value)


class Rule(StrictModel):
    """One rule: when it matches, it requires, prefers, or denies."""

    name: str | None = None
    when: Condition = Condition()
    require: Requirement | None = None
    prefer: Strategy | Requirement | None = None
    deny: str | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Rule:
        if self.require is None and self.prefer is None and self.deny is None:
            raise ValueError("a rule needs at least one of require, prefer or deny")
        return self

    def label(self, index: int) -> str:
        return self.name or f"rule {index + 1}"


class Route(StrictModel):
    """A name apps send as `model`, with its candidates, strategy and rules."""

    name: str = ""
    candidates: list[str] = Field(min_length=1)
    strategy: Strategy = Strategy.ORDERED
    default_classification: Classification = Classification.INTERNAL
    rules: list[Rule] = Field(default_factory=list)
    description: str | None = None


class BreakerSettings(StrictModel):
    failure_ratio: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(10, ge=1)
    window_s: float = Field(30.0, gt=0)
    open_s: float = Field(30.0, gt=0)


class FallbackSettings(StrictModel):
    retries: int = Field(2, ge=0, le=10)
    backoff_ms: tuple[float, float] = (100.0, 2000.0)
    deadline_ms: float = Field(60_000.0, gt=0)
    # Longest Retry-After the gateway waits on the same deployment before moving to the next one.
    max_retry_after_ms: float = Field(2_000.0, ge=0)
    on_content_policy: Literal["stop", "next"] = "stop"
    breaker: BreakerSettings = BreakerSettings()


class PrivacyFloor(StrictModel):
    """Policy-wide hard rules applied to every route before its own rules; fallback re-checks them."""

    confidential: Requirement = Requirement(
        data_location=frozenset({DataLocation.LOCAL, DataLocation.ON_PREM}), openness=Openness.OPEN
    )
    pii: Requirement | None = None


class PiiSettings(StrictModel):
    detector: str = "gateway.pii:RegexPiiDetector"
    kinds: list[str] = Field(default_factory=lambda: ["email", "phone", "card", "iban", "us_ssn"])


class BudgetLimits(StrictModel):
    daily_usd: float | None = Field(None, ge=0)
    monthly_usd: float | None = Field(None, ge=0)


class RateLimits(StrictModel):
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class TenantSpec(StrictModel):
    """Defaults and caps for one tenant (API keys map to tenants)."""

    default_classification: Classification | None = None
    quality: str | None = None
    routes: frozenset[str] | None = None
    budget: BudgetLimits = BudgetLimits()
    rate_limits: RateLimits = RateLimits()


class BudgetSettings(StrictModel):
    # refuse: 429 insufficient_quota. downgrade: serve from open, local deployments only.
    on_exhausted: Literal["refuse", "downgrade"] = "refuse"


DEFAULT_OUTPUT_TOKENS = 1024


class Limits(StrictModel):
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    deprecation_warning_days: int = Field(30, ge=0)
    # Output assumed for a chat request without max_tokens: its estimate for cost ceilings and budget
    # reservations, and so the length those ceilings let an answer reach on the dearest candidate.
    default_output_tokens: int = Field(DEFAULT_OUTPUT_TOKENS, ge=1)


class Policy(StrictModel):
    version: Literal[1]
    providers: dict[str, ProviderSpec]
    deployments: dict[str, Deployment]
    routes: dict[str, Route]
    fallback: FallbackSettings = FallbackSettings()
    privacy: PrivacyFloor = PrivacyFloor()
    pii: PiiSettings = PiiSettings()
    limits: Limits = Limits()
    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    budgets: BudgetSettings = BudgetSettings()

    @model_validator(mode="before")
    @classmethod
    def _name_entries(cls, data: Any) -> Any:
        """Copy each mapping key into its entry's `name`, so entries know what they are called."""
        if isinstance(data, dict):
            for section in ("deployments", "routes"):
                entries = data.get(section)
                if isinstance(entries, dict):
                    data[section] = {
                        k: ({**v, "name": k} if isinstance(v, dict) else v) for k, v in entries.items()
                    }
        return data

    def route_modality(self, route: Route) -> Modality:
        return self.deployments[route.candidates[0]].modality
