"""OpenAI-shaped errors, /v1/models, /readyz, /healthz and /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.local_backend.lb_support import (
    chat_model,
    image_model,
    make_config,
    openai_client,
    poll_until,
    running_backend,
)


async def test_unknown_model_is_404_model_not_found(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with openai_client(base_url) as client:
            with pytest.raises(openai.NotFoundError) as raised:
                await client.chat.completions.create(
                    model="gpt-9", messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(openai.NotFoundError):
                await client.images.generate(model="nope", prompt="a")
            listed = await client.models.list()
    assert raised.value.code == "model_not_found"
    body = raised.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert [model.id for model in listed.data] == ["tiny-chat"]


async def test_bad_bodies_are_400(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            not_json = await http.post(
                "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
            )
            no_messages = await http.post("/v1/chat/completions", json={"model": "tiny-chat"})
            bad_role = await http.post(
                "/v1/chat/completions",
                json={"model": "tiny-chat", "messages": [{"role": "robot", "content": "x"}]},
            )
            wrong_modality = await http.post("/v1/embeddings", json={"model": "tiny-chat", "input": "x"})
            not_a_route = await http.get("/v1/nothing")
    for response in (not_json, no_messages, bad_role, wrong_modality):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert no_messages.json()["error"]["param"] == "messages"
    assert wrong_modality.json()["error"]["param"] == "model"
    assert not_a_route.status_code == 404
    assert "error" in not_a_route.json()


async def test_unloadable_models_answer_503_fast(tmp_path: Path) -> None:
    config = make_config(
        chat_model("Qwen/Qwen2.5-0.5B-Instruct", name="not-cached"),  # HF_HUB_OFFLINE=1 in conftest
        image_model(tmp_path / "missing-folder", name="missing"),
        chat_model(tmp_path, name="empty-folder"),
    )
    async with running_backend(config) as base_url:
        async with openai_client(base_url) as client:
            for name, reason in (("not-cached", "offline mode"), ("empty-folder", "tokenizer")):
                started = time.monotonic()
                with pytest.raises(openai.InternalServerError) as raised:
                    await client.chat.completions.create(
                        model=name, messages=[{"role": "user", "content": "hi"}]
                    )
                assert time.monotonic() - started < 10
                assert raised.value.status_code == 503
                assert raised.value.code == "model_unavailable"
                assert reason in raised.value.message
            with pytest.raises(openai.InternalServerError) as streamed:
                await client.chat.completions.create(
                    model="not-cached", messages=[{"role": "user", "content": "hi"}], stream=True
                )
            with pytest.raises(openai.InternalServerError) as image:
                await client.images.generate(model="missing", prompt="a")
    assert "not in the local Hugging Face cache" in str(streamed.value.body)
    assert image.value.code == "model_unavailable"
    assert "does not exist" in str(image.value.body)


async def test_readyz_waits_for_startup_models(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    good = make_config(image_model(tiny_models["image"], load="startup"), chat_model(tiny_models["chat"]))
    async with running_backend(good) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            assert (await http.get("/healthz")).status_code == 200

            async def ready() -> bool:
                response = await http.get("/readyz")
                assert response.status_code in {200, 503}
                return response.status_code == 200

            await poll_until(ready, within_s=30)
            models = (await http.get("/v1/models")).json()["data"]
    states = {model["id"]: model["state"] for model in models}
    assert states == {"tiny-sd": "loaded", "tiny-chat": "unloaded"}  # first_use models stay unloaded

    broken = make_config(image_model(tmp_path / "absent", load="startup"))
    async with running_backend(broken) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

            async def failed() -> bool:
                state = (await http.get("/readyz")).json()["models"]["tiny-sd"]["state"]
                return bool(state == "failed")

            await poll_until(failed, within_s=10)
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert "does not exist" in ready.json()["models"]["tiny-sd"]["error"]


async def test_metrics_count_images_tokens_and_device_seconds(tiny_models: dict[str, Path]) -> None:
    config = make_config(image_model(tiny_models["image"]), chat_model(tiny_models["chat"]))
    async with running_backend(config) as base_url:
        async with openai_client(base_url) as client:
            await client.images.generate(model="tiny-sd", prompt="a", n=3, size="32x32")  # type: ignore[arg-type]
            chat = await client.chat.completions.create(
                model="tiny-chat", messages=[{"role": "user", "content": "hello"}], max_tokens=4
            )
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['local_backend_images_generated_total{model="tiny-sd"}'] == 3
    assert chat.usage is not None
    completion = samples['local_backend_tokens_total{kind="completion",model="tiny-chat"}']
    assert completion == chat.usage.completion_tokens
    assert samples['local_backend_device_seconds_total{model="tiny-sd"}'] > 0
    assert samples['local_backend_request_device_seconds_count{model="tiny-chat"}'] == 1
    assert samples['local_backend_queue_depth{model="tiny-sd"}'] == 0
    assert samples['local_backend_requests_total{endpoint="images",model="tiny-sd",status="200"}'] == 1
