"""`gateway check`: what loading alone does not refuse but an operator must know before going live."""

from __future__ import annotations

import datetime as dt

from gateway.policy import Modality, Policy
from gateway.pricing import unpriced
from gateway.providers_env import missing_keys

# Provider kinds that serve only some modalities; a deployment of another modality would fail every call.
SERVED_MODALITIES: dict[str, frozenset[Modality]] = {
    "litellm": frozenset({Modality.CHAT, Modality.EMBEDDING}),
    "fal": frozenset({Modality.IMAGE}),
    "replicate": frozenset({Modality.IMAGE}),
}


def unserved(policy: Policy) -> list[str]:
    """Errors for deployments whose provider kind cannot serve their modality."""
    found = []
    for name, dep in policy.deployments.items():
        kind = policy.providers[dep.provider].kind
        served = SERVED_MODALITIES.get(kind)
        if served is not None and dep.modality not in served:
            can = ", ".join(sorted(served))
            found.append(
                f"deployment {name!r} is a {dep.modality} deployment, but provider kind {kind!r} serves {can}"
            )
    return found


def check_policy(policy: Policy, today: dt.date) -> tuple[list[str], list[str]]:
    """Return (errors, warnings)."""
    errors = unserved(policy) + [
        f"deployment {name!r} has no price: litellm's price map does not know its model, so give `price:` "
        "or the provider's usd_per_hour (its cost must never be $0)"
        for name in unpriced(policy)
    ]
    warnings: list[str] = []
    window = dt.timedelta(days=policy.limits.deprecation_warning_days)
    for name, dep in policy.deployments.items():
        if dep.deprecation_date is None:
            continue
        if dep.deprecation_date <= today:
            warnings.append(
                f"deployment {name!r} is past its deprecation date {dep.deprecation_date}; routing skips it"
            )
        elif dep.deprecation_date - today <= window:
            days = (dep.deprecation_date - today).days
            warnings.append(
                f"deployment {name!r} reaches its deprecation date {dep.deprecation_date} in {days} days"
            )
    for provider, env in missing_keys(policy):
        warnings.append(
            f"provider {provider!r}: env var {env} is not set; its deployments will fail with auth errors"
        )
    return errors, warnings
