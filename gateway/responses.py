"""The Responses API (POST /v1/responses) served by chat routes: a Responses request is translated into a
chat completion request on the way in, and the chat answer back into a Response object on the way out
(streams: gateway/responses_stream.py).

Routing, privacy rules, fallback, budgets, metrics and the ledger see an ordinary chat request, so a
Responses client gets every policy a chat client gets, on every backend (closed or local), with no
upstream needing to speak the Responses API itself.

Translated: `input` (a string, or message items with text and image parts, `function_call` and
`function_call_output` items), `instructions`, `max_output_tokens`, `temperature`, `top_p`, `user`,
function `tools`, `tool_choice`, `parallel_tool_calls`, `text.format` (JSON object or schema),
`reasoning.effort`. Refused with a 400 that says why: `previous_response_id` and `conversation` (the
gateway keeps no conversation state: send the history in `input`), `background`, stored `prompt`s, built-in
tools (web search, file search, ...), file inputs. Other fields (`store`, `metadata`, `include`, ...) are
accepted; `metadata` is echoed back, and nothing is stored (`store` is answered as false).
"""

from __future__ import annotations

import os
from typing import Any

from gateway.errors import InvalidRequest

JSON = dict[str, Any]

_UNSUPPORTED = {
    "previous_response_id": "the gateway keeps no conversation state; send the whole history in `input`",
    "conversation": "the gateway keeps no conversation state; send the whole history in `input`",
    "background": "background responses are not supported; use `stream` for long answers",
    "prompt": "stored prompts are not supported; send `instructions` and `input`",
}
_ROLES = frozenset({"user", "assistant", "system", "developer"})
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def _bad(where: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{where}: {why}", param=where)


def _text(obj: JSON, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", "a string is required")
    return value


# -- request: Responses -> chat -----------------------------------------------------------------------


def chat_body(body: JSON) -> JSON:
    """The chat request for a schema-valid Responses request; InvalidRequest when it cannot be translated."""
    for name, why in _UNSUPPORTED.items():
        if body.get(name) is not None:
            raise InvalidRequest(f"{name} is not supported: {why}", param=name, code="unsupported_parameter")
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    given = body["input"]
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    else:
        messages.extend(_messages(given))
    chat: JSON = {"model": body["model"], "messages": messages}
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    for ours, theirs in (
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ):
        if body.get(ours) is not None:
            chat[theirs] = body[ours]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    return chat


def _messages(items: list[JSON]) -> list[JSON]:
    out: list[JSON] = []
    for i, item in enumerate(items):
        where = f"input.{i}"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise _bad(f"{where}.role", f"one of {', '.join(sorted(_ROLES))} is required")
            # "developer" is OpenAI's newer name for system; every chat backend knows "system".
            chat_role = "system" if role == "developer" else role
            out.append({"role": chat_role, "content": _content(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = {
                "id": _text(item, "call_id", where),
                "type": "function",
                "function": {
                    "name": _text(item, "name", where),
                    "arguments": _text(item, "arguments", where),
                },
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls of one turn: one assistant message
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output, f"{where}.output")
            if not isinstance(text, str):
                raise _bad(f"{where}.output", "a string or text parts are required")
            out.append({"role": "tool", "tool_call_id": _text(item, "call_id", where), "content": text})
        else:
            raise _bad(f"{where}.type", f"{kind!r} input items are not supported by this gateway")
    if not out:
        raise _bad("input", "at least one item is required")
    return out


def _content(content: Any, where: str) -> str | list[JSON]:
    """Text parts become one string (what every backend accepts); images keep the list form."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, "a string or a list of content parts is required")
    parts: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict):
            raise _bad(f"{where}.{j}", "a content part object is required")
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": _text(part, "text", f"{where}.{j}")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _text(part, "refusal", f"{where}.{j}")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _bad(
                    f"{where}.{j}.image_url", "an image URL is required (file_id images are not supported)"
                )
            image: JSON = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(f"{where}.{j}.type", f"{kind!r} content is not supported by this gateway")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise _bad("tools", "a list is required")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise _bad(
                f"tools.{i}.type", f"{kind!r} tools are not supported by this gateway (function tools are)"
            )
        function: JSON = {"name": _text(tool, "name", f"tools.{i}")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _text(choice, "name", "tool_choice")}}
    raise _bad("tool_choice", "auto, none, required or a function tool choice is required")


def _response_format(text: Any) -> JSON | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        schema: JSON = {"name": _text(fmt, "name", "text.format"), "schema": fmt.get("schema") or {}}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format.type", "text, json_object or json_schema is required")


# -- answer: chat -> Response -------------------------------------------------------------------------


def usage_object(prompt_tokens: int, completion_tokens: int, cached: int = 0, reasoning: int = 0) -> JSON:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(
    source: JSON,
    response_id: str,
    created_at: int,
    *,
    model: str,
    status: str,
    output: list[JSON],
    usage: JSON | None = None,
    finish_reason: str | None = None,
    error: JSON | None = None,
) -> JSON:
    """A Response object: what the request asked for, echoed, around the output."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    if reason is not None and status == "completed":
        status = "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": source.get("instructions"),
        "max_output_tokens": source.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": source.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "store": False,
        "temperature": source.get("temperature", 1.0),
        "text": source.get("text") or {"format": {"type": "text"}},
        "tool_choice": source.get("tool_choice", "auto"),
        "tools": source.get("tools") or [],
        "top_p": source.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": source.get("user"),
        "metadata": source.get("metadata") or {},
    }


def message_item(item_id: str, text: str | None, refusal: str | None, status: str) -> JSON:
    content: list[JSON] = []
    if text is not None:
        content.append({"type": "output_text", "text": text, "annotations": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_object(source: JSON, chat: JSON, response_id: str, created_at: int) -> JSON:
    """The Response for a chat completion answer to the translated request."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    text, refusal = message.get("content"), message.get("refusal")
    output: list[JSON] = []
    if text or refusal or not calls:
        output.append(
            message_item(new_id("msg"), text if isinstance(text, str) else "", refusal, "completed")
        )
    for call in calls:
        fn = call.get("function") or {}
        output.append(
            call_item(
                new_id("fc"),
                str(call.get("id") or new_id("call")),
                str(fn.get("name") or ""),
                str(fn.get("arguments") or ""),
                "completed",
            )
        )
    usage = chat.get("usage") or {}
    return envelope(
        source,
        response_id,
        created_at,
        model=str(chat.get("model") or source["model"]),
        status="completed",
        output=output,
        usage=usage_object(
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0),
        ),
        finish_reason=choice.get("finish_reason"),
    )
