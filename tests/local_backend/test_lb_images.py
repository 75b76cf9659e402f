"""Image generation through the real diffusers loading path, on a tiny random-weight pipeline."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import httpx
from PIL import Image

from tests.local_backend.lb_support import image_model, make_config, openai_client, running_backend

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _histogram_count(metrics_text: str, name: str, model: str) -> float:
    prefix = f'{name}_count{{model="{model}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def _bucket(metrics_text: str, name: str, model: str, le: str) -> float:
    prefix = f'{name}_bucket{{le="{le}",model="{model}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no {prefix!r} in metrics")


async def test_images_have_the_requested_size_and_are_png(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(image_model(tiny_models["image"]))) as base_url:
        async with openai_client(base_url) as client:
            response = await client.images.generate(model="tiny-sd", prompt="a red cat", n=2, size="48x32")  # type: ignore[arg-type]
    assert len(response.data) == 2
    for item in response.data:
        assert item.b64_json is not None
        png = base64.b64decode(item.b64_json)
        assert png.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG"
            assert image.size == (48, 32)
    extra = response.model_extra or {}
    assert isinstance(extra["seed"], int)
    assert response.usage is not None
    usage = response.usage.model_dump()
    assert usage["images"] == 2
    assert usage["device_seconds"] > 0


async def test_same_seed_gives_the_same_image_bytes(tiny_models: dict[str, Path]) -> None:
    body = {"model": "tiny-sd", "prompt": "a blue house", "size": "32x32", "seed": 1234}
    async with running_backend(make_config(image_model(tiny_models["image"]))) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            first = await http.post("/v1/images/generations", json=body)
            second = await http.post("/v1/images/generations", json=body)
            other = await http.post("/v1/images/generations", json={**body, "seed": 99})
            unseeded = await http.post("/v1/images/generations", json={**body, "seed": None})
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.json()["data"][0]["b64_json"] == second.json()["data"][0]["b64_json"]
    assert first.json()["data"][0]["b64_json"] != other.json()["data"][0]["b64_json"]
    assert first.headers["x-seed"] == "1234"
    assert float(first.headers["x-device-seconds"]) > 0
    assert unseeded.json()["seed"] == int(unseeded.headers["x-seed"])  # a random seed is reported back


async def test_concurrent_requests_are_merged_into_one_batch(tiny_models: dict[str, Path]) -> None:
    config = make_config(
        image_model(tiny_models["image"], batching={"max_batch_size": 4, "max_wait_ms": 300})
    )
    body = {"model": "tiny-sd", "prompt": "a dog", "size": "32x32"}
    async with running_backend(config) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            await http.post("/v1/images/generations", json=body)  # load the model first
            responses = await asyncio.gather(
                *(http.post("/v1/images/generations", json={**body, "seed": seed}) for seed in range(4))
            )
            metrics = (await http.get("/metrics")).text
    assert [response.status_code for response in responses] == [200] * 4
    assert [response.headers["x-batch-size"] for response in responses] == ["4"] * 4
    shares = [float(response.headers["x-device-seconds"]) for response in responses]
    assert max(shares) - min(shares) < 1e-6  # the batch time is divided evenly across its members
    images = {response.json()["data"][0]["b64_json"] for response in responses}
    assert len(images) == 4  # each member kept its own seed
    assert _histogram_count(metrics, "local_backend_batch_size", "tiny-sd") == 2  # warm-up call + one batch
    assert _bucket(metrics, "local_backend_batch_size", "tiny-sd", "3.0") == 1  # only the warm-up was small


async def test_requests_of_different_sizes_are_not_merged(tiny_models: dict[str, Path]) -> None:
    config = make_config(
        image_model(tiny_models["image"], batching={"max_batch_size": 4, "max_wait_ms": 100})
    )
    async with running_backend(config) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/v1/images/generations", json={"model": "tiny-sd", "prompt": "a", "size": size}
                    )
                    for size in ("32x32", "40x32", "32x32", "40x32")
                )
            )
    assert [response.status_code for response in responses] == [200] * 4
    assert {response.headers["x-batch-size"] for response in responses} == {"2"}


async def test_full_queue_answers_503_with_retry_after(tiny_models: dict[str, Path]) -> None:
    config = make_config(
        image_model(tiny_models["image"], batching={"max_batch_size": 1, "max_wait_ms": 0, "max_queue": 2})
    )
    body = {"model": "tiny-sd", "prompt": "a tree", "size": "64x64", "num_inference_steps": 4}
    async with running_backend(config) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            responses = await asyncio.gather(
                *(http.post("/v1/images/generations", json=body) for _ in range(8))
            )
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) >= 2
    rejected = [response for response in responses if response.status_code == 503]
    assert rejected, statuses
    for response in rejected:
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "overloaded"


async def test_speed_options_and_random_weights_load_and_generate(tiny_models: dict[str, Path]) -> None:
    speed = {"channels_last": True, "fuse_qkv": True, "vae_tiling": True}
    config = make_config(
        image_model(tiny_models["image"], name="fast-sd", speed=speed),
        image_model(tiny_models["image"], name="random-sd", random_weights=True),
    )
    async with running_backend(config) as base_url:
        async with openai_client(base_url) as client:
            for name in ("fast-sd", "random-sd"):
                response = await client.images.generate(model=name, prompt="a car", size="32x32")  # type: ignore[arg-type]
                assert response.data[0].b64_json is not None


async def test_bad_image_requests_are_400(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(image_model(tiny_models["image"]))) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            bad_size = await http.post(
                "/v1/images/generations", json={"model": "tiny-sd", "prompt": "a", "size": "33x32"}
            )
            bad_format = await http.post(
                "/v1/images/generations", json={"model": "tiny-sd", "prompt": "a", "response_format": "url"}
            )
            no_prompt = await http.post("/v1/images/generations", json={"model": "tiny-sd"})
    for response, param in ((bad_size, "size"), (bad_format, "response_format"), (no_prompt, "prompt")):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
