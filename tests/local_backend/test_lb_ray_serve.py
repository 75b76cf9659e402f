"""``local-backend serve-ray``: the same /v1 API as a Ray Serve application, on a local CPU-only Ray.

The command runs in a subprocess (it starts and stops its own Ray instance, so no Ray state leaks into
the test process); a tiny random-weight image pipeline and the shipped MiniLM embedding model are served,
and the official openai client talks to Ray's HTTP proxy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.local_backend.lb_support import embedding_model, image_model, openai_client, poll_until

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (serve-ray needs it)")

pytestmark = pytest.mark.slow

# Half a CPU each: ingress + two model deployments fit the 2-CPU local instance with room to spare.
HALF_CPU = {"ray_actor_options": {"num_cpus": 0.5}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _config(image_source: Path) -> dict[str, object]:
    return {
        "ray_ingress": HALF_CPU,
        "models": [
            image_model(image_source, ray=HALF_CPU),
            embedding_model(
                # A long wait so concurrent requests surely meet in one Ray batch on a slow machine.
                batching={"max_batch_size": 16, "max_wait_ms": 400, "max_queue": 64},
                ray={
                    **HALF_CPU,
                    "autoscaling_config": {
                        "min_replicas": 1,
                        "max_replicas": 1,
                        "target_ongoing_requests": 8,
                    },
                },
            ),
        ],
    }


@contextlib.asynccontextmanager
async def serve_ray(config_path: Path, log_path: Path) -> AsyncIterator[str]:
    """Run ``serve-ray`` on a free port until /readyz answers 200; SIGTERM it (bounded) afterwards."""
    port = _free_port()
    command = [sys.executable, "-m", "local_backend", "serve-ray", "--config", str(config_path)]
    command += ["--port", str(port), "--num-cpus", "2", "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:

            async def ready() -> bool:
                assert process.poll() is None, log_path.read_text(errors="replace")[-4000:]
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/readyz")).status_code == 200
                return False

            try:
                await poll_until(ready, within_s=75, every_s=0.5)
            except TimeoutError:
                pytest.fail("serve-ray not ready in 75 s:\n" + log_path.read_text(errors="replace")[-4000:])
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, log_path.read_text(errors="replace")[-4000:]


async def test_images_and_batched_embeddings_on_ray_serve(tmp_path: Path) -> None:
    from local_backend.testing import write_tiny_image_pipeline

    config_path = tmp_path / "models.yaml"
    config_path.write_text(yaml.safe_dump(_config(write_tiny_image_pipeline(tmp_path / "tiny-sd"))))
    async with serve_ray(config_path, tmp_path / "serve-ray.log") as base_url:
        async with openai_client(base_url) as client:
            listed = await client.models.list()
            image = await client.images.generate(model="tiny-sd", prompt="a red cat", n=2, size="32x32")  # type: ignore[arg-type]
            await client.embeddings.create(model="minilm", input="warm up")
            raws = await asyncio.gather(
                *(
                    client.embeddings.with_raw_response.create(
                        model="minilm", input=[f"text {index}", "shared"], encoding_format="float"
                    )
                    for index in range(4)
                )
            )
            with pytest.raises(openai.BadRequestError) as wrong_modality:
                await client.embeddings.create(model="tiny-sd", input="a")
    assert sorted(model.id for model in listed.data) == ["minilm", "tiny-sd"]
    assert image.data is not None and len(image.data) == 2
    assert all(base64.b64decode(item.b64_json or "")[:8] == b"\x89PNG\r\n\x1a\n" for item in image.data)
    embeddings = [raw.parse() for raw in raws]
    assert all(len(item.data) == 2 and len(item.data[0].embedding) == 384 for item in embeddings)
    # x-batch-size is the number of inputs in the Ray batch: > 2 means requests were merged by serve.batch.
    batch_sizes = [int(raw.headers["x-batch-size"]) for raw in raws]
    assert max(batch_sizes) > 2, batch_sizes
    # Validated by the backend's own endpoint code, which runs in the ingress replicas.
    assert wrong_modality.value.code == "invalid_request_error"


def test_ray_sections_map_to_deployment_options() -> None:
    from local_backend.config import ConfigError, parse_config
    from local_backend.ray_serve import build_ray_app, deployment_options

    embedding = embedding_model(
        ray={
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 3},
            "ray_actor_options": {"num_gpus": 0.5},
        }
    )
    config = parse_config({"models": [embedding]}, origin="test")
    options = deployment_options(config.models[0].ray, default_max_ongoing=128, max_queued=64)
    assert options == {
        "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.5},
        "max_ongoing_requests": 128,
        "max_queued_requests": 64,
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2.0},
    }
    assert deployment_options(None, default_max_ongoing=8)["num_replicas"] == 1
    with pytest.raises(ConfigError, match="not both"):
        parse_config(
            {"models": [embedding_model(ray={"num_replicas": 2, "autoscaling_config": {}})]}, origin="t"
        )
    chat = {"name": "c", "source": "x", "modality": "chat", "ray": {"num_replicas": 2}}
    with pytest.raises(ConfigError, match="ray_ingress"):
        build_ray_app(parse_config({"models": [chat]}, origin="t"))
