"""Cost of a request, estimated before it goes out and computed from real usage after.

Prices come from the deployment's `price:` (filled at load from litellm's price map when the policy gives
none, see gateway/catalog.py) or, for self-hosted providers, from device-seconds times the provider's
`usd_per_hour`. A deployment with neither is refused by `gateway check` (see `unpriced`), so a cost is
never silently $0. When an upstream reports no usage the caller estimates it and marks it estimated.
"""

from __future__ import annotations

from gateway.policy import Deployment, Policy, Price, ProviderSpec
from gateway.signals import UsageEstimate
from providers.base import Usage

# Device time assumed per request for a self-hosted deployment that gives no est_device_seconds.
DEFAULT_DEVICE_SECONDS = 2.0
# Output image tokens per megapixel, for image models billed by token (gpt-image-*): OpenAI's "high"
# quality count for 1024x1024 is 4160 tokens. Used only for estimates; the adapter reports real tokens.
IMAGE_TOKENS_PER_MEGAPIXEL = 4160 / 1.048576


def image_token_estimate(price: Price, megapixels: float) -> int:
    """Output tokens to assume for an image request on a deployment priced per token, not per image."""
    if price.per_image or price.per_megapixel or not price.output_per_mtok:
        return 0
    return round(megapixels * IMAGE_TOKENS_PER_MEGAPIXEL)


def _price_cost(price: Price, prompt: int, completion: int, images: int, megapixels: float) -> float:
    cost = price.per_request or 0.0
    if price.input_per_mtok:
        cost += prompt * price.input_per_mtok / 1e6
    if price.output_per_mtok:
        cost += completion * price.output_per_mtok / 1e6
    if price.per_image:
        cost += images * price.per_image
    if price.per_megapixel:
        cost += megapixels * price.per_megapixel
    return cost


def actual_cost(deployment: Deployment, provider: ProviderSpec, usage: Usage) -> float:
    cost = 0.0
    if deployment.price is not None:
        cost += _price_cost(
            deployment.price, usage.prompt_tokens, usage.completion_tokens, usage.images, usage.megapixels
        )
    if provider.usd_per_hour is not None:
        cost += usage.device_seconds * provider.usd_per_hour / 3600.0
    return cost


def estimated_cost(deployment: Deployment, provider: ProviderSpec, estimate: UsageEstimate) -> float:
    """Worst-case cost of a request before it is sent (used by cost ceilings and routing by cost)."""
    cost = 0.0
    if deployment.price is not None:
        output_tokens = estimate.output_tokens + image_token_estimate(deployment.price, estimate.megapixels)
        cost += _price_cost(
            deployment.price,
            estimate.prompt_tokens,
            output_tokens,
            estimate.images,
            estimate.megapixels,
        )
    if provider.usd_per_hour is not None:
        per_call = deployment.est_device_seconds or DEFAULT_DEVICE_SECONDS
        units = max(1, estimate.images)
        cost += per_call * units * provider.usd_per_hour / 3600.0
    return cost


def output_token_cap(
    deployment: Deployment, provider: ProviderSpec, estimate: UsageEstimate, ceiling_usd: float
) -> int | None:
    """The most output tokens (all choices together) the deployment may produce and still cost at most
    `ceiling_usd`, or None when its output is not priced per token (its cost cannot grow with length).

    A cost ceiling is enforced with it: the estimate that let the deployment through assumed `max_tokens`
    (or a default) output tokens, and an upstream left uncapped could write more."""
    price = deployment.price
    if price is None or not price.output_per_mtok:
        return None
    before_output = estimated_cost(deployment, provider, UsageEstimate(prompt_tokens=estimate.prompt_tokens))
    return max(0, int((ceiling_usd - before_output) * 1e6 / price.output_per_mtok))


def unpriced(policy: Policy) -> list[str]:
    """Deployments whose cost the gateway could not compute: no price (given or from the map), no $/hour.

    Expects a loaded policy (`parse_policy` has already filled prices from the map).
    """
    return [
        name
        for name, dep in policy.deployments.items()
        if (dep.price is None or dep.price.is_empty()) and policy.providers[dep.provider].usd_per_hour is None
    ]
