"""Fixtures for the local backend tests; helpers to build configs and serve them live in lb_support.py."""

from __future__ import annotations

import os
from pathlib import Path

# The tests never touch the network: a Hub id that is not cached must fail at once, as offline deployments do.
# Set before anything imports huggingface_hub, which reads it once at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SD pipeline and a tiny Llama chat model with random weights, saved once per session."""
    from local_backend.testing import write_tiny_chat_model, write_tiny_image_pipeline

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "image": write_tiny_image_pipeline(root / "tiny-sd"),
        "chat": write_tiny_chat_model(root / "tiny-llama"),
    }
