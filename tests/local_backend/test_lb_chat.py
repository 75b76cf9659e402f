"""Chat completions with a tiny random-weight Llama loaded through AutoModelForCausalLM + AutoTokenizer."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.local_backend.lb_support import chat_model, make_config, openai_client, running_backend

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "system", "content": "you are a helpful assistant"},
    {"role": "user", "content": "hello how are you ?"},
]


async def test_plain_completion_reports_tokens_and_device_seconds(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with openai_client(base_url) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="tiny-chat", messages=MESSAGES, max_tokens=6
            )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason in {"stop", "length"}
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert (usage.model_extra or {})["device_seconds"] > 0
    assert float(raw.headers["x-device-seconds"]) == pytest.approx(
        (usage.model_extra or {})["device_seconds"], abs=1e-5
    )


async def test_streaming_matches_plain_text_and_ends_with_usage(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with openai_client(base_url) as client:
            plain = await client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=8)
            stream = await client.chat.completions.create(
                model="tiny-chat",
                messages=MESSAGES,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == plain.choices[0].message.content  # greedy decoding: the same text either way
    finish = [
        chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert finish == [plain.choices[0].finish_reason]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]
    assert (usage_chunk.usage.model_extra or {})["device_seconds"] > 0


async def test_raw_stream_is_sse_ending_with_done(tiny_models: dict[str, Path]) -> None:
    body = {"model": "tiny-chat", "messages": MESSAGES, "max_tokens": 3, "stream": True}
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            response = await http.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])
    assert '"usage"' not in response.text  # no usage chunk unless include_usage was asked for


async def test_stop_string_truncates_the_text(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with openai_client(base_url) as client:
            full = await client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=8)
            words = (full.choices[0].message.content or "").split()
            if len(words) < 2:
                pytest.skip("the random model produced too few words to pick a stop string")
            stop = words[1]
            stopped = await client.chat.completions.create(
                model="tiny-chat", messages=MESSAGES, max_tokens=8, stop=[stop]
            )
            stream = await client.chat.completions.create(
                model="tiny-chat", messages=MESSAGES, max_tokens=8, stop=stop, stream=True
            )
            streamed = "".join(
                [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
            )
    expected = (full.choices[0].message.content or "").split(stop)[0]
    assert stopped.choices[0].message.content == expected
    assert stopped.choices[0].finish_reason == "stop"
    assert streamed == expected


async def test_max_tokens_limit_is_a_400(tiny_models: dict[str, Path]) -> None:
    config = make_config(chat_model(tiny_models["chat"], chat={"max_tokens": 8, "max_tokens_limit": 16}))
    async with running_backend(config) as base_url:
        async with openai_client(base_url) as client:
            with pytest.raises(openai.BadRequestError) as raised:
                await client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=17)
    assert raised.value.code == "invalid_request_error"


async def test_sampling_with_a_seed_is_repeatable(tiny_models: dict[str, Path]) -> None:
    async with running_backend(make_config(chat_model(tiny_models["chat"]))) as base_url:
        async with openai_client(base_url) as client:
            texts = [
                (
                    await client.chat.completions.create(
                        model="tiny-chat", messages=MESSAGES, max_tokens=8, temperature=1.0, top_p=0.9, seed=7
                    )
                )
                .choices[0]
                .message.content
                for _ in range(2)
            ]
    assert texts[0] == texts[1]


async def test_random_weights_chat_model_builds_from_the_config(tiny_models: dict[str, Path]) -> None:
    config = make_config(chat_model(tiny_models["chat"], name="random-chat", random_weights=True))
    async with running_backend(config) as base_url:
        async with openai_client(base_url) as client:
            completion = await client.chat.completions.create(
                model="random-chat", messages=MESSAGES, max_tokens=4
            )
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 4
