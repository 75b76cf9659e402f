"""Which provider keys the environment lacks (names only: values are never read into messages)."""

from __future__ import annotations

import os

from gateway.policy import Policy


def provider_secrets(policy: Policy) -> tuple[str, ...]:
    """The key values the policy's providers use, to cut from anything a client or a log may see."""
    values = (
        os.environ.get(spec.api_key_env or "") for spec in policy.providers.values() if spec.api_key_env
    )
    return tuple(v for v in values if v and len(v) >= 8)


def missing_keys(policy: Policy) -> list[tuple[str, str]]:
    return [
        (name, spec.api_key_env)
        for name, spec in policy.providers.items()
        if spec.api_key_env and not os.environ.get(spec.api_key_env)
    ]
