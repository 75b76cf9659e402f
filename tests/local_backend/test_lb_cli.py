"""``python -m local_backend serve`` in a subprocess: starts, answers, exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _poll(url: str, *, until_status: int, within_s: float) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == until_status:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer {until_status} within {within_s}s")
        time.sleep(0.1)


def test_serve_with_the_packaged_config_answers_and_stops_on_sigterm() -> None:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "local_backend", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _poll(f"{base_url}/healthz", until_status=200, within_s=30)
        models = httpx.get(f"{base_url}/v1/models", timeout=5).json()["data"]
        assert {model["id"] for model in models} == {"qwen2.5-0.5b-instruct", "sd-turbo", "all-minilm-l6-v2"}
        _poll(f"{base_url}/readyz", until_status=200, within_s=60)  # the startup embedding model loaded
        started = time.monotonic()
        chat = httpx.post(
            f"{base_url}/v1/chat/completions",
            json={"model": "qwen2.5-0.5b-instruct", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert chat.status_code == 503
        assert chat.json()["error"]["code"] == "model_unavailable"
        assert time.monotonic() - started < 15
        embedded = httpx.post(
            f"{base_url}/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "hello"}, timeout=30
        )
        assert embedded.status_code == 200
        assert len(embedded.json()["data"][0]["embedding"]) == 384
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_serve_refuses_a_bad_config_with_file_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text("models:\n  - {name: x, source: y, modality: sound}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "local_backend", "serve", "--config", str(config), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "modality" in result.stderr


def test_console_script_checks_the_packaged_config() -> None:
    script = Path(sys.executable).with_name("local-backend")
    if not script.exists():
        pytest.skip("the package is not installed with its console scripts in this environment")
    result = subprocess.run(
        [str(script), "check-config"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "3 models OK" in result.stdout


def test_server_modules_import_no_ml_library() -> None:
    code = (
        "import sys, local_backend.app, local_backend.cli; "
        "heavy = [name for name in ('torch', 'diffusers', 'transformers', 'sentence_transformers') if name in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
