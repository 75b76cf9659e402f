"""Responses API streaming: chat completion chunks rewritten as the Responses API's typed SSE events.

    response.created, response.in_progress
    response.output_item.added, response.content_part.added          (the assistant message opens)
    response.output_text.delta ...
    response.output_item.added (function_call), response.function_call_arguments.delta ...
    ... .done for every open part and item, in order
    response.completed (or response.incomplete when max_output_tokens cut it), with usage

A stream that cannot complete (the upstream broke after the first chunk, or its ledger row could not be
written) ends with `response.failed` instead, so no client mistakes a cut answer for a complete one.
Every event carries `sequence_number`; output and content indexes match what the events opened, so the
openai SDK's `responses.stream()` helper rebuilds the same Response as `response.completed` holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.responses import (
    INCOMPLETE_REASONS,
    JSON,
    call_item,
    envelope,
    message_item,
    new_id,
    usage_object,
)


@dataclass(slots=True)
class _Message:
    index: int
    id: str
    text: list[str] = field(default_factory=list)

    def item(self, status: str) -> JSON:
        return message_item(self.id, "".join(self.text), None, status)

    def where(self) -> JSON:
        """Where its text part is, as every text event says it."""
        return {"item_id": self.id, "output_index": self.index, "content_index": 0}


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)

    def item(self, status: str) -> JSON:
        return call_item(self.id, self.call_id, self.name, "".join(self.arguments), status)


class ResponseEvents:
    """gateway.streaming.Events for one Responses stream."""

    def __init__(self, source: JSON, response_id: str, created_at: int) -> None:
        self.source = source
        self.response_id = response_id
        self.created_at = created_at
        self.model = str(source["model"])
        self.sequence = 0
        self.started = False
        self.message: _Message | None = None
        self.calls: dict[int, _Call] = {}
        self.items: list[_Message | _Call] = []
        self.finish_reason: str | None = None

    def _event(self, type_: str, **fields: Any) -> bytes:
        payload = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + type_.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _response(self, status: str, **kw: Any) -> JSON:
        item_status = "completed" if status == "completed" else "incomplete"
        output = [] if status == "in_progress" else [item.item(item_status) for item in self.items]
        return envelope(
            self.source,
            self.response_id,
            self.created_at,
            model=self.model,
            status=status,
            output=output,
            **kw,
        )

    def _start(self, out: list[bytes]) -> None:
        if not self.started:
            self.started = True
            out.append(self._event("response.created", response=self._response("in_progress")))
            out.append(self._event("response.in_progress", response=self._response("in_progress")))

    def chunk(self, data: JSON) -> bytes | None:
        out: list[bytes] = []
        if isinstance(data.get("model"), str):
            self.model = data["model"]
        self._start(out)
        choices = data.get("choices") or ()
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta: JSON = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._text(text, out)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call(call, out)
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        return b"".join(out) or None

    def _text(self, text: str, out: list[bytes]) -> None:
        msg = self.message
        if msg is None:
            msg = self.message = _Message(len(self.items), new_id("msg"))
            self.items.append(msg)
            item = msg.item("in_progress")
            out.append(self._event("response.output_item.added", output_index=msg.index, item=item))
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(self._event("response.content_part.added", **msg.where(), part=part))
        msg.text.append(text)
        out.append(self._event("response.output_text.delta", **msg.where(), delta=text, logprobs=[]))

    def _call(self, call: JSON, out: list[bytes]) -> None:
        position = call.get("index", 0)
        fn: JSON = call["function"] if isinstance(call.get("function"), dict) else {}
        state = self.calls.get(position)
        if state is None:
            call_id, name = call.get("id"), fn.get("name")
            state = self.calls[position] = _Call(
                len(self.items),
                new_id("fc"),
                call_id if isinstance(call_id, str) else new_id("call"),
                name if isinstance(name, str) else "",
            )
            self.items.append(state)
            out.append(
                self._event(
                    "response.output_item.added", output_index=state.index, item=state.item("in_progress")
                )
            )
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            state.arguments.append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=state.id,
                    output_index=state.index,
                    delta=arguments,
                )
            )

    def _close_items(self, out: list[bytes], status: str) -> None:
        for item in self.items:
            if isinstance(item, _Message):
                text = "".join(item.text)
                out.append(self._event("response.output_text.done", **item.where(), text=text, logprobs=[]))
                part = {"type": "output_text", "text": text, "annotations": []}
                out.append(self._event("response.content_part.done", **item.where(), part=part))
            else:
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item.id,
                        output_index=item.index,
                        name=item.name,
                        arguments="".join(item.arguments),
                    )
                )
            done = self._event("response.output_item.done", output_index=item.index, item=item.item(status))
            out.append(done)

    def end(self, done: Any) -> bytes:
        """`done` is accounting.Finished: its usage is what the request was charged for."""
        out: list[bytes] = []
        self._start(out)
        status = "incomplete" if self.finish_reason in INCOMPLETE_REASONS else "completed"
        self._close_items(out, status)
        usage = usage_object(done.usage.prompt_tokens, done.usage.completion_tokens)
        response = self._response(status, usage=usage, finish_reason=self.finish_reason)
        out.append(self._event(f"response.{status}", response=response))
        # An SSE comment: ignored by OpenAI clients, readable by anyone who wants the final cost.
        out.append(f": x-gateway-cost-usd={done.cost_usd:.8f}\n\n".encode())
        return b"".join(out)

    def error(self, message: str, type_: str, code: str | None) -> bytes:
        out: list[bytes] = []
        self._start(out)
        failure = {"code": code or type_, "message": message}
        out.append(self._event("response.failed", response=self._response("failed", error=failure)))
        return b"".join(out)
