"""Fixtures for the closed-provider tests: fake vendors on loopback, one `VendorCase` per provider kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from providers.litellm_provider import import_litellm
from tests.fakes.anthropic_vendor import FakeAnthropic
from tests.fakes.fal_vendor import FakeFal
from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.fakes.replicate_vendor import FakeReplicate

# First: prepares TLS and fal-client's hosts before anything imports fal_client.
from tests.providers.vendors import (
    FAL_SOCKET,
    GOOD_KEY,
    KEY_ENV,
    VendorCase,
    openai_faults,
    server_ssl_context,
)


def pytest_configure(config: pytest.Config) -> None:
    # litellm's stream types make pydantic warn once when first built; harmless, and not from our code.
    config.addinivalue_line(
        "filterwarnings", "ignore:Item .* is using the `ReadOnly` qualifier:UserWarning:pydantic"
    )


@pytest.fixture(scope="session", autouse=True)
def _close_reserved_socket() -> Iterator[None]:
    yield
    FAL_SOCKET.close()


@pytest.fixture(scope="session")
def litellm_module() -> Any:
    """litellm imported once for the session (~5 s), as the provider's first call would in a thread."""
    return import_litellm()


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, GOOD_KEY)
    yield


@pytest.fixture
async def vendor_case(request: pytest.FixtureRequest, key_env: None) -> AsyncIterator[VendorCase]:
    """The provider kind named by the test's parameter, with its fake vendor running."""
    kind: str = request.param
    case: VendorCase
    if kind in ("openai_compatible", "openai"):
        fake = FakeOpenAI(kind, require_key=GOOD_KEY)
        base = await fake.start()
        price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0} if kind == "openai_compatible" else None
        case = VendorCase(kind, "chat", "gpt-4o", fake, base, faults=openai_faults(), price=price)
    elif kind == "litellm":
        request.getfixturevalue("litellm_module")
        fake = FakeAnthropic(key=GOOD_KEY)
        base = await fake.start()
        case = VendorCase(kind, "chat", "anthropic/claude-sonnet-4-6", fake, base, faults=openai_faults())
    elif kind == "fal":
        fake = FakeFal(FAL_SOCKET, server_ssl_context(), key=GOOD_KEY)
        base = await fake.start()
        faults = {**openai_faults(), "content_policy": Fault("nsfw")}
        case = VendorCase(kind, "image", "fal-ai/flux/schnell", fake, base, faults=faults)
    elif kind == "replicate":
        fake = FakeReplicate(server_ssl_context(), token=GOOD_KEY)
        base = await fake.start()
        faults = {**openai_faults(), "content_policy": Fault("nsfw")}
        case = VendorCase(
            kind,
            "image",
            "black-forest-labs/flux-schnell",
            fake,
            base,
            options={"poll_interval_s": 0.05},
            faults=faults,
            price={"per_image": 0.003},
        )
    else:  # pragma: no cover
        raise ValueError(kind)
    yield case
    await fake.stop()


@pytest.fixture
async def fal_fake(key_env: None) -> AsyncIterator[FakeFal]:
    fake = FakeFal(FAL_SOCKET, server_ssl_context(), key=GOOD_KEY)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def replicate_fake(key_env: None) -> AsyncIterator[FakeReplicate]:
    fake = FakeReplicate(server_ssl_context(), token=GOOD_KEY)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def anthropic_fake(key_env: None, litellm_module: Any) -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(key=GOOD_KEY)
    await fake.start()
    yield fake
    await fake.stop()
