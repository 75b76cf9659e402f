"""Provider kinds as import strings, imported only when a policy uses them.

A heavy SDK (litellm, fal-client, replicate) therefore never slows the gateway's start-up unless the
policy names that kind. Add a kind by adding one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from gateway.policy import ProviderSpec
    from providers.base import Provider, ProviderFactory

PROVIDER_KINDS: dict[str, str] = {
    "openai_compatible": "providers.openai_compatible:OpenAICompatibleProvider",
    "openai": "providers.openai_sdk:OpenAIProvider",
    "litellm": "providers.litellm_provider:LiteLLMProvider",
    "fal": "providers.fal:FalProvider",
    "replicate": "providers.replicate:ReplicateProvider",
}


def import_from_string(target: str) -> object:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def provider_class(kind: str) -> ProviderFactory:
    try:
        target = PROVIDER_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown provider kind {kind!r}; known kinds: {', '.join(sorted(PROVIDER_KINDS))}"
        ) from None
    return cast("ProviderFactory", import_from_string(target))


def build_provider(name: str, spec: ProviderSpec) -> Provider:
    """Build the provider a policy entry describes (imports its module on first use)."""
    return provider_class(spec.kind)(spec, name)
