"""Signals: the facts about one request that routing rules act on.

Example::

    signals = extract_signals(route, modality, headers, texts, tenant="acme", detector=detector,
                              estimate=UsageEstimate(prompt_tokens=120, output_tokens=256))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.errors import InvalidRequest
from gateway.pii import PiiDetector
from gateway.policy import Classification, Modality, Route


@dataclass(frozen=True, slots=True)
class UsageEstimate:
    """What the request will consume at most, for cost ceilings and budget reservations."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    megapixels: float = 0.0


@dataclass(frozen=True, slots=True)
class Signals:
    classification: Classification
    pii: frozenset[str]
    quality: str | None
    min_quality: int | None
    max_cost_usd: float | None
    modality: Modality
    tenant: str
    estimate: UsageEstimate


def extract_signals(
    route: Route,
    modality: Modality,
    headers: Mapping[str, str],
    texts: Iterable[str],
    *,
    tenant: str,
    detector: PiiDetector,
    estimate: UsageEstimate,
) -> Signals:
    classification = _classification(headers.get("x-data-classification"), route.default_classification)
    quality, min_quality = _quality(headers.get("x-quality"))
    pii: set[str] = set()
    for text in texts:
        pii |= detector.detect(text)
    return Signals(
        classification=classification,
        pii=frozenset(pii),
        quality=quality,
        min_quality=min_quality,
        max_cost_usd=_max_cost(headers.get("x-max-cost-usd")),
        modality=modality,
        tenant=tenant,
        estimate=estimate,
    )


def _classification(raw: str | None, default: Classification) -> Classification:
    if raw is None or raw == "":
        return default
    try:
        return Classification(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(c.value for c in Classification)
        raise InvalidRequest(
            f"x-data-classification must be one of {allowed} (got {raw!r})", param="x-data-classification"
        ) from None


def _quality(raw: str | None) -> tuple[str | None, int | None]:
    """`x-quality` is a label rules match (draft, standard, hero, ...) or a minimum quality score 0-100."""
    if raw is None or raw.strip() == "":
        return None, None
    value = raw.strip().lower()
    if value.isdigit():
        score = int(value)
        if score > 100:
            raise InvalidRequest("x-quality as a number must be 0-100", param="x-quality")
        return None, score
    if not value.replace("-", "").replace("_", "").isalnum() or len(value) > 32:
        raise InvalidRequest(
            "x-quality must be a short label such as draft or hero, or 0-100", param="x-quality"
        )
    return value, None


def _max_cost(raw: str | None) -> float | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InvalidRequest(
            f"x-max-cost-usd must be a non-negative number of dollars (got {raw!r})", param="x-max-cost-usd"
        )
    return value
