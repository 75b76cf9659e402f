"""What is particular to each vendor: request mapping (sizes, counts, b64), usage, lazy litellm."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ErrorKind, UpstreamError
from gateway.policy import Deployment, ProviderSpec
from providers.base import CallContext
from providers.registry import build_provider
from tests.fakes.fal_vendor import FakeFal
from tests.fakes.openai_upstream import PNG_1X1, FakeOpenAI, Fault
from tests.fakes.replicate_vendor import FakeReplicate
from tests.providers.vendors import GOOD_KEY, KEY_ENV

ROOT = Path(__file__).resolve().parents[2]
CTX = CallContext("req_vendor", 3.0)


def _dep(model: str, modality: str) -> Deployment:
    return Deployment.model_validate(
        {
            "name": "d",
            "provider": "p",
            "model": model,
            "modality": modality,
            "openness": "closed",
            "data": {"location": "vendor"},
        }
    )


def _spec(kind: str, base_url: str | None = None, **options: object) -> ProviderSpec:
    return ProviderSpec(kind=kind, base_url=base_url, api_key_env=KEY_ENV, timeout_s=3, options=options)


@pytest.fixture
async def openai_fake(key_env: None) -> FakeOpenAI:
    fake = FakeOpenAI("openai", require_key=GOOD_KEY)
    await fake.start()
    yield fake  # type: ignore[misc]
    await fake.stop()


async def test_openai_images_keep_response_format_except_for_b64_only_models(openai_fake: FakeOpenAI) -> None:
    provider = build_provider("p", _spec("openai", openai_fake.base_url))
    try:
        dalle = await provider.images(
            _dep("dall-e-2", "image"), {"prompt": "fox", "n": 2, "response_format": "url"}, CTX
        )
        gpt_image = await provider.images(
            _dep("gpt-image-1", "image"), {"prompt": "fox", "response_format": "url"}, CTX
        )
    finally:
        await provider.aclose()
    assert openai_fake.received[0].body["response_format"] == "url" and openai_fake.received[0].body["n"] == 2
    assert "response_format" not in openai_fake.received[1].body
    assert dalle.usage.images == 2 and gpt_image.usage.images == 1
    # The fake reports no usage: a token-billed model's tokens are estimated (and marked so), never $0.
    assert gpt_image.usage.completion_tokens == 4160 and gpt_image.usage.estimated
    assert dalle.usage.completion_tokens == 0
    assert base64.b64decode(gpt_image.body["data"][0]["b64_json"]) == PNG_1X1
    headers = {k.lower(): v for k, v in openai_fake.received[0].headers.items()}
    assert headers["x-request-id"] == "req_vendor"


async def test_openai_embeddings_ask_for_floats(openai_fake: FakeOpenAI) -> None:
    provider = build_provider("p", _spec("openai", openai_fake.base_url))
    try:
        result = await provider.embeddings(
            _dep("text-embedding-3-small", "embedding"), {"input": ["a", "b"]}, CTX
        )
    finally:
        await provider.aclose()
    assert openai_fake.received[0].body["encoding_format"] == "float"
    assert [len(d["embedding"]) for d in result.body["data"]] == [8, 8]
    assert result.usage.prompt_tokens == 6


async def test_litellm_embeddings_and_openai_models_through_api_base(
    openai_fake: FakeOpenAI, litellm_module: object
) -> None:
    provider = build_provider("p", _spec("litellm", openai_fake.base_url))
    try:
        emb = await provider.embeddings(
            _dep("openai/text-embedding-3-small", "embedding"), {"input": "hello"}, CTX
        )
        chat = await provider.chat(
            _dep("openai/gpt-4o", "chat"), {"messages": [{"role": "user", "content": "hi"}]}, CTX
        )
        with pytest.raises(UpstreamError) as caught:
            await provider.images(_dep("openai/dall-e-3", "image"), {"prompt": "fox"}, CTX)
    finally:
        await provider.aclose()
    assert emb.body["data"][0]["embedding"] == pytest.approx([0.1] * 8) and emb.usage.prompt_tokens == 3
    assert chat.body["choices"][0]["message"]["content"] == "Hello from openai/gpt-4o."
    assert caught.value.kind is ErrorKind.BAD_REQUEST


async def test_fal_maps_size_count_seed_steps_and_returns_b64(fal_fake: FakeFal) -> None:
    provider = build_provider("p", _spec("fal", arguments={"enable_safety_checker": True}))
    body = {"prompt": "fox", "size": "512x768", "n": 2, "seed": 7, "steps": 4, "response_format": "b64_json"}
    try:
        result = await provider.images(_dep("fal-ai/flux/schnell", "image"), body, CTX)
    finally:
        await provider.aclose()
    sent = fal_fake.received[0].body
    assert sent["image_size"] == {"width": 512, "height": 768} and sent["num_images"] == 2
    assert sent["seed"] == 7 and sent["num_inference_steps"] == 4 and sent["sync_mode"] is True
    assert sent["enable_safety_checker"] is True
    assert fal_fake.received[0].headers["Authorization"] == f"Key {GOOD_KEY}"
    assert [base64.b64decode(d["b64_json"]) for d in result.body["data"]] == [PNG_1X1, PNG_1X1]
    assert result.usage.images == 2 and result.usage.megapixels == pytest.approx(2 * 512 * 768 / 1e6)


async def test_fal_enum_size_and_url_answers(fal_fake: FakeFal) -> None:
    provider = build_provider("p", _spec("fal"))
    try:
        result = await provider.images(
            _dep("fal-ai/flux/dev", "image"), {"prompt": "fox", "size": "square_hd"}, CTX
        )
    finally:
        await provider.aclose()
    assert (
        fal_fake.received[0].body["image_size"] == "square_hd"
        and "sync_mode" not in fal_fake.received[0].body
    )
    assert result.body["data"][0]["url"].startswith(fal_fake.base_url + "/files/")


async def test_fal_timeout_cancels_the_queued_request(fal_fake: FakeFal) -> None:
    fal_fake.script("fal-ai/flux/schnell", Fault.hang(3))
    provider = build_provider("p", _spec("fal"))
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.images(
                _dep("fal-ai/flux/schnell", "image"), {"prompt": "fox"}, CallContext("r", 0.5)
            )
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert len(fal_fake.cancelled) == 1  # no bill for an answer nobody waits for


async def test_fal_content_checker_refusal_is_content_policy(fal_fake: FakeFal) -> None:
    fal_fake.script("fal-ai/flux/schnell", Fault.http(422, "content_policy_violation"))
    provider = build_provider("p", _spec("fal"))
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.images(_dep("fal-ai/flux/schnell", "image"), {"prompt": "fox"}, CTX)
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.CONTENT_POLICY and caught.value.upstream_status == 422


async def test_replicate_maps_size_and_count_waits_and_reads_file_outputs(
    replicate_fake: FakeReplicate,
) -> None:
    provider = build_provider(
        "p", _spec("replicate", replicate_fake.base_url, input={"output_format": "png"})
    )
    body = {"prompt": "fox", "size": "1792x1024", "n": 2, "response_format": "b64_json"}
    odd = {"prompt": "fox", "size": "1000x700"}
    try:
        result = await provider.images(_dep("black-forest-labs/flux-schnell", "image"), body, CTX)
        custom = await provider.images(_dep("black-forest-labs/flux-dev", "image"), odd, CTX)
    finally:
        await provider.aclose()
    first, second = replicate_fake.received[0], replicate_fake.received[-1]
    assert first.body["input"]["aspect_ratio"] == "7:4" or first.body["input"].get("width") == 1792
    assert first.body["input"]["num_outputs"] == 2 and first.body["input"]["output_format"] == "png"
    assert first.headers["Prefer"] == "wait=3" and first.headers["Authorization"] == f"Bearer {GOOD_KEY}"
    assert [base64.b64decode(d["b64_json"]) for d in result.body["data"]] == [PNG_1X1, PNG_1X1]
    assert second.body["input"]["aspect_ratio"] == "custom" and second.body["input"]["width"] == 1000
    assert custom.body["data"][0]["url"].startswith(replicate_fake.base_url + "/files/")
    assert result.usage.images == 2


def test_litellm_is_imported_lazily_never_at_start_up() -> None:
    code = (
        "import sys\n"
        "from gateway.policy_loader import load_policy\n"
        "from providers.registry import build_provider\n"
        "p = load_policy('policies/examples/closed-first-local-shutdown-fallback.yaml')\n"
        "[build_provider(n, s) for n, s in p.providers.items()]\n"
        "assert 'litellm' not in sys.modules, 'litellm imported at start-up'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
