"""Embeddings with sentence-transformers; all pending requests for a model are encoded in one call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from local_backend.config import ModelConfig
from local_backend.device import choose_device, choose_dtype, synchronize
from local_backend.jobs import EmbeddingPayload, EmbeddingResult
from local_backend.worker import BatchRun


class EmbeddingRunner:
    """A loaded ``SentenceTransformer``."""

    def __init__(self, model: Any, device: str) -> None:
        self.model = model
        self.device = device

    def run_batch(self, payloads: Sequence[EmbeddingPayload]) -> BatchRun[EmbeddingResult]:
        texts = [text for payload in payloads for text in payload.inputs]
        started = time.perf_counter()
        vectors = self.model.encode(texts, convert_to_numpy=True, batch_size=max(32, len(texts)))
        synchronize(self.device)
        device_seconds = time.perf_counter() - started
        token_counts = self._token_counts(texts)
        results, offset = [], 0
        for payload in payloads:
            count = len(payload.inputs)
            rows = np.asarray(vectors[offset : offset + count], dtype=np.float32)
            results.append(EmbeddingResult(rows, sum(token_counts[offset : offset + count])))
            offset += count
        return BatchRun(results=results, device_seconds=device_seconds)

    def _token_counts(self, texts: list[str]) -> list[int]:
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        return [len(ids) for ids in encoded["input_ids"]]


def load_embedding_runner(model: ModelConfig, source: str) -> EmbeddingRunner:
    """Load the resolved ``source`` (see ``sources.resolve_source``) as a ``SentenceTransformer``."""
    from sentence_transformers import SentenceTransformer

    device = choose_device(model.device)
    dtype = choose_dtype(model.dtype, device)
    encoder = SentenceTransformer(source, device=device)
    encoder.to(dtype)
    encoder.eval()
    return EmbeddingRunner(encoder, device)
