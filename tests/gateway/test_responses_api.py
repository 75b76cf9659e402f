"""The Responses API (POST /v1/responses) through the official openai client: plain, streamed, tools,
structured output, history, policy and ledger, and the clear refusals for what a gateway cannot do."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import Harness
from tests.fakes.openai_upstream import FakeOpenAI, Fault

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def test_plain_text_answer_with_usage_headers_and_ledger_row(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    raw = await hybrid.client.responses.with_raw_response.create(
        model="chat",
        input="hello",
        instructions="Be brief.",
        max_output_tokens=200,
        metadata={"ticket": "42"},
    )
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hello from vendor/big-model."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        11,
        5,
        16,
    )
    assert response.metadata == {"ticket": "42"} and response.instructions == "Be brief."
    assert raw.headers["x-gateway-route"] == "chat" and raw.headers["x-gateway-deployment"] == "closed-best"

    sent = vendor.received[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    assert sent.body["max_tokens"] == 200 and "metadata" not in sent.body

    rows = await hybrid.ledger_rows()
    assert len(rows) == 1 and rows[0]["route"] == "chat" and rows[0]["status"] == 200
    assert rows[0]["cost_usd"] == pytest.approx(11 * 3.0 / 1e6 + 5 * 15.0 / 1e6)


async def test_history_with_parts_images_and_tool_results_becomes_chat_messages(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    await hybrid.client.responses.create(
        model="chat",
        input=[
            {"role": "developer", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is "},
                    {"type": "input_text", "text": "this?"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
                ],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            {
                "type": "function_call",
                "call_id": "call_9",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_9", "output": "cold"},
        ],
    )
    assert vendor.received[-1].body["messages"] == [
        {"role": "system", "content": "You are terse."},  # every chat backend knows "system"
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is "},
                {"type": "text", "text": "this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "cold"},
    ]


async def test_function_tools_and_structured_output_are_translated(
    hybrid: Harness, vendor: FakeOpenAI
) -> None:
    response = await hybrid.client.responses.create(
        model="chat",
        input="weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        text={"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
    )
    sent = vendor.received[-1].body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {k: WEATHER[k] for k in ("name", "description", "parameters")},
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id == "call_1"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}


async def test_stream_events_rebuild_the_same_response(hybrid: Harness) -> None:
    events = []
    async with hybrid.client.responses.stream(model="chat", input="hello") as stream:
        async for event in stream:
            events.append(event)
        final = await stream.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "Hello from vendor/big-model."
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 5
    rows = await hybrid.ledger_rows()
    assert rows[-1]["stream"] == 1 and rows[-1]["status"] == 200


async def test_streamed_tool_call_arguments_arrive_in_pieces_and_whole(hybrid: Harness) -> None:
    async with hybrid.client.responses.stream(
        model="chat",
        input="weather?",
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert pieces == ['{"city"', ': "Paris"}']
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == '{"city": "Paris"}'
    (call,) = final.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_1"


async def test_a_cut_answer_is_incomplete_with_its_reason(hybrid: Harness) -> None:
    plain = await hybrid.client.responses.create(model="chat", input="hello", max_output_tokens=2)
    assert plain.status == "incomplete" and plain.incomplete_details is not None
    assert plain.incomplete_details.reason == "max_output_tokens" and plain.output_text == "Hello from"

    stream = await hybrid.client.responses.create(
        model="chat", input="hello", max_output_tokens=2, stream=True
    )
    last = [e async for e in stream][-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


async def test_fallback_and_privacy_rules_hold_as_for_chat(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.always("big-model", Fault.http(503), times=10)
    raw = await hybrid.client.responses.with_raw_response.create(model="chat", input="hi")
    assert raw.headers["x-gateway-deployment"] == "closed-cheap"

    raw = await hybrid.client.responses.with_raw_response.create(
        model="chat",
        input="my card is 4111 1111 1111 1111",
        extra_headers={"x-data-classification": "confidential"},
    )
    assert raw.headers["x-gateway-deployment"] == "open-local"
    assert raw.parse().output_text == "Hello from local/local-llm."


async def test_a_stream_broken_midway_ends_with_response_failed(hybrid: Harness, vendor: FakeOpenAI) -> None:
    vendor.script("big-model", Fault.cut_stream(after_chunks=2))
    stream = await hybrid.client.responses.create(model="chat", input="hello", stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None and events[-1].response.error.code == "stream_interrupted"
    assert not any(e.type == "response.completed" for e in events)
    rows = await hybrid.ledger_rows()
    assert rows[-1]["status"] == 502 and rows[-1]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "keeps no conversation state"),
        ({"background": True}, "background", "not supported"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type", "'web_search' tools are not supported"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input.0.type", "'reasoning' input items"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input.0.content.0.type",
            "",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input.0.content.0.image_url",
            "file_id",
        ),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role", "one of"),
        ({"input": ""}, "input", ""),
        ({"input": []}, "input", ""),
        ({"max_output_tokens": 0}, "max_output_tokens", ""),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type", ""),
    ],
)
async def test_what_cannot_be_translated_is_refused_with_the_reason(
    hybrid: Harness, vendor: FakeOpenAI, kwargs: dict[str, object], param: str, words: str
) -> None:
    body: dict[str, object] = {"model": "chat", "input": "hello", **kwargs}
    with pytest.raises(openai.BadRequestError) as refused:
        await hybrid.client.responses.create(**body)  # type: ignore[arg-type]
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == param and words in error["message"]
    assert vendor.calls() == 0 and await hybrid.ledger_rows() == []


async def test_an_unknown_route_is_model_not_found(hybrid: Harness) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await hybrid.client.responses.create(model="gpt-9", input="hello")
    assert missing.value.code == "model_not_found"
