"""Chat completions with a transformers causal LM: chat template, sampling, streaming, stop strings.

``generate`` runs on the model's worker thread; a streamer hooked into it decodes each new token and
hands text deltas to the request's sink (which forwards them to the event loop).  Chat requests are
run one at a time per model: batched generation with padding is not implemented.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from local_backend.config import ModelConfig
from local_backend.device import choose_device, choose_dtype, synchronize
from local_backend.jobs import ChatPayload, ChatResult
from local_backend.runners.random_init import build_random_causal_lm
from local_backend.worker import BatchRun


class _TextTracker:
    """Decodes the growing token list and releases only text that cannot turn into a stop string."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = [text for text in stop if text]
        self._holdback = max((len(text) - 1 for text in self._stop), default=0)
        self.token_ids: list[int] = []
        self.text = ""
        self.released = 0
        self.stopped = False

    def add(self, token_ids: list[int]) -> str:
        self.token_ids.extend(token_ids)
        text = self._tokenizer.decode(self.token_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return ""
        self.text = text
        for stop in self._stop:
            position = text.find(stop)
            if position != -1:
                self.text, self.stopped = text[:position], True
        limit = len(self.text) if self.stopped else max(self.released, len(self.text) - self._holdback)
        return self._release(limit)

    def flush(self) -> str:
        return self._release(len(self.text))

    def _release(self, limit: int) -> str:
        delta = self.text[self.released : limit]
        self.released = max(self.released, limit)
        return delta


class _Streamer(BaseStreamer):
    """Receives token ids from ``generate`` (the prompt first, then one step at a time)."""

    def __init__(self, tracker: _TextTracker, on_delta: Callable[[str], None] | None) -> None:
        self._tracker = tracker
        self._on_delta = on_delta
        self._prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        delta = self._tracker.add([int(token) for token in value.reshape(-1).tolist()])
        if delta and self._on_delta is not None:
            self._on_delta(delta)

    def end(self) -> None:
        delta = self._tracker.flush()
        if delta and self._on_delta is not None:
            self._on_delta(delta)


class _StopWhen(StoppingCriteria):
    def __init__(self, tracker: _TextTracker, cancelled: threading.Event) -> None:
        self._tracker = tracker
        self._cancelled = cancelled

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        done = self._tracker.stopped or self._cancelled.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)  # type: ignore[return-value]


class ChatRunner:
    """A loaded causal LM and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self._eos_ids = [token for token in [*eos_ids, tokenizer.eos_token_id] if token is not None]
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self._eos_ids[0]

    def run_batch(self, payloads: Sequence[ChatPayload]) -> BatchRun[ChatResult]:
        results, device_seconds = [], 0.0
        for payload in payloads:
            result, seconds = self._generate(payload)
            results.append(result)
            device_seconds += seconds
        return BatchRun(results=results, device_seconds=device_seconds)

    def _generate(self, payload: ChatPayload) -> tuple[ChatResult, float]:
        encoded = self.tokenizer.apply_chat_template(
            payload.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)
        prompt_tokens = int(input_ids.shape[1])
        tracker = _TextTracker(self.tokenizer, payload.stop)
        sampling: dict[str, Any] = {"do_sample": False}
        if payload.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": payload.temperature,
                "top_p": payload.top_p,
                "top_k": 0,
            }
        if payload.seed is not None:
            torch.manual_seed(payload.seed)  # only this thread generates with this model, one at a time
        if payload.on_start is not None:
            payload.on_start()
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=payload.max_tokens,
                eos_token_id=self._eos_ids,
                pad_token_id=self._pad_id,
                streamer=_Streamer(tracker, payload.on_delta),
                stopping_criteria=StoppingCriteriaList([_StopWhen(tracker, payload.cancelled)]),
                **sampling,
            )
        synchronize(self.device)
        device_seconds = time.perf_counter() - started
        completion_tokens = int(output.shape[1]) - prompt_tokens
        ended_on_eos = completion_tokens > 0 and int(output[0, -1]) in self._eos_ids
        finish_reason = "stop" if tracker.stopped or ended_on_eos else "length"
        result = ChatResult(
            text=tracker.text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        return result, device_seconds


def load_chat_runner(model: ModelConfig, source: str) -> ChatRunner:
    """Load tokenizer and causal LM from the resolved ``source`` (or its config with random weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = choose_device(model.device)
    dtype = choose_dtype(model.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {model.source!r} has no chat template")
    if model.random_weights:
        language_model = build_random_causal_lm(source, dtype)
    else:
        language_model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    language_model.to(device)
    language_model.eval()
    if model.speed.torch_compile:
        language_model.forward = torch.compile(language_model.forward)
    return ChatRunner(language_model, tokenizer, device)
