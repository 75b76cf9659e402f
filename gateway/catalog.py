"""Fill what a policy leaves out from litellm's price map: prices and shutdown dates.

Called once at the end of `parse_policy`, so everything downstream (routing by cost, cost ceilings, the
ledger, `gateway check`, `/metrics` deprecation gauges) sees complete deployments, and the per-request path
never looks anything up. What the policy says always wins: a deployment with a `price:` keeps it whole (no
field-by-field merge, so a map price can never be added on top), one with a `deprecation_date` keeps it.

Self-hosted deployments (their provider has `usd_per_hour`) are priced by hardware time and are left alone;
so is every deployment of a provider with `options: {price_map: false}`.

Example::

    policy = enrich(parse_policy(text))        # parse_policy already does this
    policy.deployments["claude"].price         # Price(input_per_mtok=3.0, output_per_mtok=15.0)
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from gateway.policy import Deployment, Policy, ProviderSpec
from providers.price_map import lookup

log = logging.getLogger("gateway.policy")


def uses_price_map(spec: ProviderSpec) -> bool:
    return spec.usd_per_hour is None and spec.options.get("price_map", True) is not False


def enrich_deployment(dep: Deployment, spec: ProviderSpec) -> Deployment:
    """The deployment with its missing price and deprecation date taken from the map, if it knows them."""
    needs_price = dep.price is None or dep.price.is_empty()
    if not uses_price_map(spec) or (not needs_price and dep.deprecation_date is not None):
        return dep
    entry = lookup(dep.model, kind=spec.kind, modality=dep.modality)
    if entry is None:
        return dep
    update: dict[str, Any] = {}
    if needs_price and entry.price is not None:
        update["price"] = entry.price
    if dep.deprecation_date is None and entry.deprecation_date is not None:
        update["deprecation_date"] = entry.deprecation_date
    return dep.model_copy(update=update) if update else dep


def enrich(policy: Policy, *, today: dt.date | None = None) -> Policy:
    """A copy of `policy` with prices and deprecation dates filled from the map; logs what is retired."""
    deployments = {
        name: enrich_deployment(dep, policy.providers[dep.provider])
        if dep.provider in policy.providers
        else dep
        for name, dep in policy.deployments.items()
    }
    changed = any(deployments[name] is not dep for name, dep in policy.deployments.items())
    enriched = policy.model_copy(update={"deployments": deployments}) if changed else policy
    log_retired(enriched, today or dt.date.today())
    return enriched


def retired(policy: Policy, today: dt.date) -> dict[str, dt.date]:
    """Deployments already past their deprecation date (routing skips them), with the date."""
    return {
        name: dep.deprecation_date
        for name, dep in policy.deployments.items()
        if dep.deprecation_date is not None and dep.deprecation_date <= today
    }


def log_retired(policy: Policy, today: dt.date) -> None:
    for name, date in retired(policy, today).items():
        dep = policy.deployments[name]
        log.warning(
            "deployment %r (%s on provider %r) is past its deprecation date %s; routing skips it",
            name,
            dep.model,
            dep.provider,
            date.isoformat(),
        )
