"""Which provider keys the environment lacks (names only: values are never read into messages)."""

from __future__ import annotations

import os

from gateway.policy import Policy


def missing_keys(policy: Policy) -> list[tuple[str, str]]:
    return [
        (name, spec.api_key_env)
        for name, spec in policy.providers.items()
        if spec.api_key_env and not os.environ.get(spec.api_key_env)
    ]
