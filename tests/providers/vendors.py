"""Shared by the closed-provider tests: the loopback TLS set-up and one `VendorCase` per provider kind.

Imported under one module name (tests.providers.vendors) by conftest and tests alike, so the set-up runs once.

fal-client reads FAL_RUN_HOST / FAL_QUEUE_RUN_HOST once, when `fal_client` is first imported, and always
speaks https. So before anything imports it, this module creates a trustme CA (trusted through
SSL_CERT_FILE, which httpx honours), reserves a listening socket for the fake fal server and points those
variables at it. The fake Replicate server uses the same CA, so its https output URLs become the SDK's
FileOutput objects as in production.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

_CA = trustme.CA()
_CA_DIR = Path(tempfile.mkdtemp(prefix="gateway-test-ca-"))
_CA_FILE = _CA_DIR / "ca.pem"
_CA.cert_pem.write_to_path(str(_CA_FILE))
_SERVER_CERT = _CA.issue_cert("127.0.0.1", "localhost")
FAL_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
FAL_SOCKET.bind(("127.0.0.1", 0))
FAL_SOCKET.listen(128)
FAL_HOST = f"127.0.0.1:{FAL_SOCKET.getsockname()[1]}"
os.environ["SSL_CERT_FILE"] = str(_CA_FILE)
os.environ["FAL_RUN_HOST"] = FAL_HOST
os.environ["FAL_QUEUE_RUN_HOST"] = FAL_HOST
if "fal_client" in sys.modules:  # pragma: no cover - a guard for whoever reorders imports
    raise RuntimeError(
        "fal_client was imported before tests/providers/conftest.py could point it at the fake"
    )

from gateway.errors import ErrorKind  # noqa: E402
from gateway.policy import Deployment, ProviderSpec  # noqa: E402
from providers.base import CallContext, Provider, ProviderResult  # noqa: E402
from providers.registry import build_provider  # noqa: E402
from tests.fakes.openai_upstream import Fault  # noqa: E402

KEY_ENV = "PROV_UNDER_TEST_KEY"
GOOD_KEY = "sk-under-test-SECRET-5678"
TIMEOUT_S = 1.5  # the provider-under-test's timeout (fal takes several round trips); `hang` faults outlast it


def server_ssl_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _SERVER_CERT.configure_cert(ctx)
    return ctx


# The scenarios every provider kind must meet, and the ErrorKind each must raise at the adapter.
FAILURES: dict[str, ErrorKind] = {
    "rate_limited": ErrorKind.RATE_LIMITED,
    "server_error": ErrorKind.TRANSIENT,
    "timeout": ErrorKind.TIMEOUT,
    "retired": ErrorKind.RETIRED,
    "content_policy": ErrorKind.CONTENT_POLICY,
    "bad_key": ErrorKind.AUTH,
}


@dataclass
class VendorCase:
    """One provider kind against its fake vendor: how to configure it, fail it and call it."""

    kind: str
    modality: str
    model: str
    fake: Any
    base_url: str
    options: dict[str, Any] = field(default_factory=dict)
    # The fault the fake model answers with, per scenario (bad_key is a wrong key, not a fault).
    faults: dict[str, Fault] = field(default_factory=dict)
    # Set when the policy must name a price (litellm's map does not know the model).
    price: dict[str, float] | None = None

    @property
    def streams(self) -> bool:
        return self.modality == "chat"

    @property
    def fake_model(self) -> str:
        """The model name the fake sees (litellm strips its `anthropic/` routing prefix)."""
        return self.model.split("/", 1)[1] if self.kind == "litellm" else self.model

    def arm(self, scenario: str) -> None:
        if scenario in self.faults:
            self.fake.script(self.fake_model, self.faults[scenario])

    def spec(self) -> ProviderSpec:
        return ProviderSpec(
            kind=self.kind,
            base_url=self.base_url,
            api_key_env=KEY_ENV,
            timeout_s=TIMEOUT_S,
            options=self.options,
        )

    def deployment(self) -> Deployment:
        return Deployment.model_validate(
            {
                "name": "primary",
                "provider": "under_test",
                "model": self.model,
                "modality": self.modality,
                "openness": "closed",
                "data": {"location": "vendor"},
            }
        )

    def provider(self) -> Provider:
        return build_provider("under_test", self.spec())

    async def call(self, provider: Provider, body: dict[str, Any] | None = None) -> ProviderResult:
        ctx = CallContext("req_contract", TIMEOUT_S)
        dep = self.deployment()
        if self.modality == "chat":
            return await provider.chat(dep, body or {"messages": [{"role": "user", "content": "hi"}]}, ctx)
        return await provider.images(dep, body or {"prompt": "a red fox", "size": "1024x768", "n": 1}, ctx)

    def policy_provider_yaml(self) -> str:
        options = "{" + ", ".join(f"{k}: {v}" for k, v in self.options.items()) + "}"
        return (
            f'{{kind: {self.kind}, base_url: "{self.base_url}", api_key_env: {KEY_ENV}, '
            f"timeout_s: {TIMEOUT_S}, options: {options}}}"
        )


def openai_faults() -> dict[str, Fault]:
    return {
        "rate_limited": Fault.http(429, "rate_limit_exceeded", retry_after="1"),
        "server_error": Fault.http(500),
        "timeout": Fault.hang(3.0),
        "retired": Fault.http(404, "model_not_found"),
        "content_policy": Fault.http(400, "content_policy_violation"),
    }


KINDS = ["openai_compatible", "openai", "litellm", "fal", "replicate"]


def gateway_policy(case: VendorCase, backup_url: str) -> str:
    """A policy whose route `main` tries the provider under test first and a healthy FakeOpenAI second."""
    price = ""
    if case.price:
        price = ", price: {" + ", ".join(f"{k}: {v}" for k, v in case.price.items()) + "}"
    return f"""
version: 1
providers:
  under_test: {case.policy_provider_yaml()}
  backup: {{kind: openai_compatible, base_url: "{backup_url}", api_key_env: FAKE_VENDOR_KEY, timeout_s: 5}}
deployments:
  primary: {{provider: under_test, model: "{case.model}", modality: {case.modality}, openness: closed,
            data: {{location: vendor}}{price}}}
  secondary: {{provider: backup, model: backup-model, modality: {case.modality}, openness: closed,
              data: {{location: vendor}}, price: {{input_per_mtok: 1.0, output_per_mtok: 1.0, per_image: 0.01}}}}
routes:
  main: {{candidates: [primary, secondary]}}
fallback:
  retries: 0
  backoff_ms: [1, 5]
  deadline_ms: 10000
  max_retry_after_ms: 200
  breaker: {{failure_ratio: 0.5, min_requests: 50, window_s: 30, open_s: 30}}
"""
