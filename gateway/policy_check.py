"""`gateway check`: what loading alone does not refuse but an operator must know before going live."""

from __future__ import annotations

import datetime as dt

from gateway.policy import Policy
from gateway.pricing import unpriced
from gateway.providers_env import missing_keys


def check_policy(policy: Policy, today: dt.date) -> tuple[list[str], list[str]]:
    """Return (errors, warnings)."""
    errors = [
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
