"""The request and answers every target sees: OpenAI-shaped and of realistic size.

The plain answer is ~0.7 KB (a paragraph of text plus usage); the stream is 48 content chunks, a finish
chunk, a usage chunk and `[DONE]` (~12 KB), like a short chat answer. The request is ~0.4 KB.
"""

from __future__ import annotations

from typing import Any

import orjson

CHAT_MODEL = "bench-chat"
STREAM_MODEL = "bench-stream"
UPSTREAM_MODEL = "bench-model"
# Path prefixes on the fake upstream: nginx cannot look inside the body for "stream": true, so plain and
# streamed answers live under different base URLs and each target is configured with both.
PLAIN_PREFIX = "/plain/v1"
STREAM_PREFIX = "/stream/v1"

_TEXT = (
    "The gateway routes each request by policy to a closed API or to local open weights, and falls "
    "back to the next deployment when one fails. This answer is long enough to look like a real one: "
    "a short paragraph that a model might write when asked to summarise a design document for a busy "
    "reader who wants the gist in a few sentences and nothing more."
)
_WORDS = _TEXT.split()


def request_body(model: str = CHAT_MODEL, *, stream: bool = False) -> bytes:
    """A chat request of ordinary size: a system prompt and a user question."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant. Answer in plain English. " * 3},
            {
                "role": "user",
                "content": "Summarise the design of a policy-routed model gateway in a few sentences, "
                "covering routing, fallback, cost accounting and privacy rules.",
            },
        ],
        "max_tokens": 256,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def plain_answer() -> bytes:
    text = " ".join(_WORDS)
    answer = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1735689600,
        "model": UPSTREAM_MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 62, "completion_tokens": len(_WORDS), "total_tokens": 62 + len(_WORDS)},
    }
    return orjson.dumps(answer)


def stream_answer() -> bytes:
    base = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": UPSTREAM_MODEL,
        "system_fingerprint": "fp_bench",
    }
    events: list[dict[str, Any]] = []
    for i, word in enumerate(_WORDS[:48]):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
        events.append(
            {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
        )
    events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    events.append(
        {**base, "choices": [], "usage": {"prompt_tokens": 62, "completion_tokens": 48, "total_tokens": 110}}
    )
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
