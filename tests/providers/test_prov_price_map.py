"""Prices and shutdown dates from litellm's packaged map: lookup, enrichment at load, `gateway check`."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
import yaml

from gateway.catalog import enrich, retired
from gateway.policy import Modality, Policy, Price
from gateway.policy_check import check_policy
from gateway.policy_loader import parse_policy
from gateway.pricing import actual_cost, estimated_cost, unpriced
from gateway.signals import UsageEstimate
from providers.base import Usage
from providers.price_map import key_variants, load_map, lookup

TODAY = dt.date(2026, 11, 22)


def _policy(deployments: str, providers: str = "") -> str:
    return f"""
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY}}
  anthropic: {{kind: litellm, api_key_env: ANTHROPIC_API_KEY}}
  fal: {{kind: fal, api_key_env: FAL_KEY}}
  replicate: {{kind: replicate, api_key_env: REPLICATE_API_TOKEN}}
  local: {{kind: openai_compatible, base_url: "http://127.0.0.1:8100/v1", usd_per_hour: 0.5}}
{providers}
deployments:
{deployments}
routes:
  main: {{candidates: [first]}}
"""


def _dep(name: str, provider: str, model: str, modality: str = "chat", extra: str = "") -> str:
    return (
        f"  {name}: {{provider: {provider}, model: {model}, modality: {modality}, openness: closed, "
        f"data: {{location: vendor}}{extra}}}\n"
    )


@pytest.mark.parametrize(
    ("model", "kind", "modality", "price", "deprecation"),
    [
        ("gpt-4o", "openai", Modality.CHAT, Price(input_per_mtok=2.5, output_per_mtok=10.0), None),
        ("openai/gpt-4o", "litellm", Modality.CHAT, Price(input_per_mtok=2.5, output_per_mtok=10.0), None),
        (
            "anthropic/claude-sonnet-4-5",
            "litellm",
            Modality.CHAT,
            Price(input_per_mtok=3.0, output_per_mtok=15.0),
            dt.date(2026, 9, 29),
        ),
        ("fal-ai/flux/schnell", "fal", Modality.IMAGE, Price(per_image=0.003), None),
        ("fal-ai/flux-pro/v1.1", "fal", Modality.IMAGE, Price(per_image=0.04), None),
        ("dall-e-3", "openai", Modality.IMAGE, Price(per_image=0.04), dt.date(2026, 5, 12)),
        # gpt-image-* bill image tokens; the openai adapter reports them as completion tokens.
        (
            "gpt-image-1",
            "openai",
            Modality.IMAGE,
            Price(input_per_mtok=5.0, output_per_mtok=40.0),
            dt.date(2026, 10, 23),
        ),
        ("text-embedding-3-small", "openai", Modality.EMBEDDING, Price(input_per_mtok=0.02), None),
    ],
)
def test_lookup_reads_prices_and_dates(
    model: str, kind: str, modality: Modality, price: Price, deprecation: dt.date | None
) -> None:
    entry = lookup(model, kind=kind, modality=modality)
    assert entry is not None
    assert entry.price == price
    assert entry.deprecation_date == deprecation


def test_lookup_refuses_unknown_models_and_wrong_modality() -> None:
    assert lookup("black-forest-labs/flux-schnell", kind="replicate", modality=Modality.IMAGE) is None
    assert (
        lookup("gpt-4o", kind="openai", modality=Modality.IMAGE) is None
    )  # a chat model's price is not an image price
    assert key_variants("fal-ai/flux/schnell", "fal") == ["fal-ai/flux/schnell", "fal_ai/fal-ai/flux/schnell"]


def test_map_is_read_once_and_enrichment_is_fast() -> None:
    assert len(load_map()) > 1000
    deployments = "".join(_dep(f"d{i}" if i else "first", "openai", "gpt-4o") for i in range(200))
    bare = Policy.model_validate(yaml.safe_load(_policy(deployments)))
    started = time.perf_counter()
    enriched = enrich(bare, today=TODAY)
    assert time.perf_counter() - started < 0.5  # 200 lookups against the cached map (~10 ms unloaded)
    assert all(d.price is not None for d in enriched.deployments.values())


def test_load_fills_missing_prices_and_dates_and_the_policy_wins() -> None:
    policy = parse_policy(
        _policy(
            _dep("first", "openai", "gpt-4o")
            + _dep("claude", "anthropic", "anthropic/claude-sonnet-4-5")
            + _dep("own-price", "openai", "gpt-4o", extra=", price: {input_per_mtok: 1.0}")
            + _dep(
                "own-date", "anthropic", "anthropic/claude-sonnet-4-5", extra=", deprecation_date: 2027-01-01"
            )
            + _dep("flux", "fal", "fal-ai/flux/schnell", "image")
        ),
        today=TODAY,
    )
    deps = policy.deployments
    assert deps["first"].price == Price(input_per_mtok=2.5, output_per_mtok=10.0)
    assert deps["claude"].deprecation_date == dt.date(2026, 9, 29)
    assert deps["own-price"].price == Price(input_per_mtok=1.0)  # whole, not merged with the map's
    assert deps["own-date"].deprecation_date == dt.date(2027, 1, 1)
    assert deps["own-date"].price == Price(input_per_mtok=3.0, output_per_mtok=15.0)
    assert deps["flux"].price == Price(per_image=0.003)
    cost = actual_cost(deps["flux"], policy.providers["fal"], Usage(images=2))
    assert cost == pytest.approx(0.006)
    assert retired(policy, TODAY) == {"claude": dt.date(2026, 9, 29)}


def test_self_hosted_and_opted_out_deployments_are_left_alone() -> None:
    policy = parse_policy(
        _policy(
            _dep("first", "local", "gpt-4o") + _dep("opted-out", "no_map", "gpt-4o"),
            providers="  no_map: {kind: openai, api_key_env: OPENAI_API_KEY, options: {price_map: false}}",
        ),
        today=TODAY,
    )
    assert policy.deployments["first"].price is None  # priced by usd_per_hour, not the vendor's list
    assert unpriced(policy) == ["opted-out"]


def test_check_refuses_a_deployment_priced_nowhere() -> None:
    policy = parse_policy(
        _policy(_dep("first", "replicate", "black-forest-labs/flux-schnell", "image")), today=TODAY
    )
    errors, _ = check_policy(policy, TODAY)
    assert any("'first' has no price" in e for e in errors)
    priced = parse_policy(
        _policy(
            _dep(
                "first", "replicate", "black-forest-labs/flux-schnell", "image", ", price: {per_image: 0.003}"
            )
        ),
        today=TODAY,
    )
    assert check_policy(priced, TODAY)[0] == []


def test_check_refuses_a_modality_the_provider_kind_cannot_serve() -> None:
    policy = parse_policy(
        _policy(_dep("first", "fal", "fal-ai/flux/schnell", "chat", ", price: {per_request: 0.01}"))
    )
    errors, _ = check_policy(policy, TODAY)
    assert any("provider kind 'fal' serves image" in e for e in errors)


def test_load_logs_deployments_past_their_date_and_check_warns(caplog: pytest.LogCaptureFixture) -> None:
    text = _policy(
        _dep("first", "anthropic", "anthropic/claude-sonnet-4-5") + _dep("new", "openai", "gpt-4o")
    )
    with caplog.at_level(logging.WARNING, logger="gateway.policy"):
        policy = parse_policy(text, today=TODAY)
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.policy"]
    assert len(logged) == 1 and "'first'" in logged[0] and "2026-09-29" in logged[0]
    _, warnings = check_policy(policy, TODAY)
    assert any("'first' is past its deprecation date 2026-09-29" in w for w in warnings)
    assert enrich(policy, today=TODAY) == policy  # idempotent: a loaded policy is already complete


def test_token_priced_image_models_are_never_estimated_at_zero() -> None:
    policy = parse_policy(_policy(_dep("first", "openai", "gpt-image-2", "image")), today=TODAY)
    dep = policy.deployments["first"]
    assert dep.price == Price(input_per_mtok=5.0, output_per_mtok=30.0)
    cost = estimated_cost(dep, policy.providers["openai"], UsageEstimate(images=1, megapixels=1.048576))
    assert cost == pytest.approx(4160 * 30.0 / 1e6)
