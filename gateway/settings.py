"""Process settings: where things are, read once from the environment or the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    policy_path: Path
    # A SQLite path, or a postgresql:// DSN for a ledger shared by several gateways.
    ledger_path: str | Path = Path("var/ledger.sqlite3")
    admin_key: str | None = field(default=None, repr=False)
    watch_policy: bool = True
    watch_interval_s: float = 1.0
    keys_refresh_s: float = 2.0
    # redis://host:port/db shared by replicas (breakers, retired deployments, rate limits, budgets);
    # None keeps all of it in this process.
    redis_url: str | None = None
    redis_prefix: str = "hgw:"  # several gateways (or tests) can share one Redis under different prefixes

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            policy_path=Path(os.environ.get("GATEWAY_POLICY", "policies/default.yaml")),
            ledger_path=os.environ.get("GATEWAY_LEDGER", "var/ledger.sqlite3"),
            admin_key=os.environ.get("GATEWAY_ADMIN_KEY") or None,
            watch_policy=os.environ.get("GATEWAY_WATCH_POLICY", "1") != "0",
            redis_url=os.environ.get("GATEWAY_REDIS_URL") or None,
            redis_prefix=os.environ.get("GATEWAY_REDIS_PREFIX") or "hgw:",
        )
