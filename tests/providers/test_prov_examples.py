"""Every policy in policies/examples/ loads and passes `gateway check` without errors (warnings allowed)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.policy_check import check_policy
from gateway.policy_loader import load_policy
from tests.conftest import HarnessFactory
from tests.fakes.openai_upstream import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.yaml"))
TODAY = dt.date(2026, 11, 22)


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"hero-images-closed-bulk-local.yaml", "closed-first-local-shutdown-fallback.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_checks_clean(path: Path) -> None:
    policy = load_policy(path, today=TODAY)
    errors, _ = check_policy(policy, TODAY)
    assert errors == []


def test_gateway_check_cli_accepts_the_shutdown_example() -> None:
    path = ROOT / "policies" / "examples" / "closed-first-local-shutdown-fallback.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check", str(path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "'dall-e-3' is past its deprecation date 2026-05-12" in done.stdout
    assert "'claude-sonnet-4-5' is past its deprecation date 2026-09-29" in done.stdout  # from litellm's map


async def test_shutdown_example_routes_around_retired_models(make_harness: HarnessFactory) -> None:
    """The example's routes with the vendors pointed at fakes: retired deployments are never called."""
    anthropic, openai_fake, local = FakeOpenAI("anthropic"), FakeOpenAI("openai"), FakeOpenAI("local")
    for fake in (anthropic, openai_fake, local):
        await fake.start()
    text = (ROOT / "policies" / "examples" / "closed-first-local-shutdown-fallback.yaml").read_text()
    # Same deployments, routes and dates; only the providers reach loopback fakes.
    text = text.replace(
        "kind: litellm                  # litellm speaks Anthropic's Messages API",
        f'kind: openai_compatible\n    base_url: "{anthropic.base_url}"',
    )
    text = text.replace(
        "kind: openai\n", f'kind: openai_compatible\n    base_url: "{openai_fake.base_url}"\n'
    )
    text = text.replace('base_url: "http://127.0.0.1:8100/v1"', f'base_url: "{local.base_url}"')
    text = text.replace("managed: true", "managed: false")
    try:
        async with make_harness(text, today=TODAY) as harness:
            chat = await harness.client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            image = await harness.client.images.with_raw_response.generate(model="image", prompt="a fox")
    finally:
        for fake in (anthropic, openai_fake, local):
            await fake.stop()
    assert chat.headers["x-gateway-deployment"] == "claude-sonnet-4-6"  # claude-sonnet-4-5 is past its date
    assert anthropic.calls("anthropic/claude-sonnet-4-5") == 0
    assert image.headers["x-gateway-deployment"] == "sd-turbo-local"  # dall-e-3 is past its date
    assert openai_fake.calls("dall-e-3") == 0
